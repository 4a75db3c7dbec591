"""The ITO paper's claims on the toon benchmark: a lambda sweep (edit success against preservation,
the trade-off of §3.2 / Fig. 5), ITO against SDEdit, DiffEdit and ControlNet-only, and a picture grid
like the paper's Fig. 5 / Fig. 8 (input, target condition, mask, guidance image, output per lambda).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ito_study.py --n 10 --out docs/images/ito

Writes sweep.json, sweep.md, tradeoff_*.png (needs matplotlib: pip install -e '.[bench]') and grid.png.
`--keep FILE` keeps the outputs, and `--rejudge FILE --evaluator DIR` judges them again without
running any method.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
from PIL import Image

from semedit.engine.counting import count_network_calls
from semedit.engine.masks import resize
from semedit.eval.bench import TASK_KINDS, make_task, make_tasks, run_method, score, summarise, task_request
from semedit.methods import make_config, run_edit
from semedit.methods.base import parse_setting
from semedit.methods.ito import request_edit_mask
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.world import resize_square


def tradeoff_plot(points: dict, baselines: dict, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    lams = sorted(points)
    xs = [points[v]["preservation_mae"] for v in lams]
    ys = [points[v]["edit_success"] for v in lams]
    ax.plot(xs, ys, "o-", color="tab:blue", label="ITO, λ = 0 … 1")
    for v, x, y in zip(lams, xs, ys):
        ax.annotate(f"λ={v:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for (name, s), marker in zip(baselines.items(), "s^Dv"):
        ax.plot([s["preservation_mae"]], [s["edit_success"]], marker, label=name)
    ax.set_xlabel("MAE outside the true edit region (lower: better preserved)")
    ax.set_ylabel("edit success (evaluator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def sweep(bb, tasks, lams, fields: dict | None = None, progress=print) -> tuple[dict, dict]:
    """ITO at every lambda on every task. The edit mask (Eq. 7) does not depend on lambda: it is
    estimated once per task and given to each run, and its U-Net evaluations and seconds are added
    to every run's cost. Returns {lambda: rows} and, per task, the pictures of the grid."""
    fields = fields or {}
    base = make_config("ito", **fields)
    runs, pictures = {lam: [] for lam in lams}, {}
    for n, t in enumerate(tasks, 1):
        req = task_request(t, bb.image_size)
        t0 = time.perf_counter()
        with count_network_calls(bb) as counted:
            mask, _ = request_edit_mask(bb, req, base, t.seed)
        mask_calls = counted.unet_evaluations
        mask_seconds = time.perf_counter() - t0
        req.mask = resize(mask, (bb.image_size,) * 2)[0, 0].numpy() > 0
        pics = {"mask": req.mask, "outputs": {}}
        for lam in lams:
            res = run_edit("ito", bb, req, make_config("ito", **{**fields, "lam": lam}), seed=t.seed)
            runs[lam].append({"method": "ito", "kind": t.kind, "index": t.index, "output": resize_square(res.image, 64),
                              "unet_evaluations": res.unet_evaluations + mask_calls,
                              "seconds": res.provenance["seconds"] + mask_seconds})
            pics["outputs"][lam] = runs[lam][-1]["output"]
            if "guidance_image" in res.intermediates and ("guidance" not in pics or lam == base.lam):
                pics["guidance"] = resize_square(res.intermediates["guidance_image"], 64)
        pictures[(t.kind, t.index)] = pics
        progress(f"task {n}/{len(tasks)} ({t.kind} {t.index}) done")
    return runs, pictures


def picture_grid(tasks, pictures: dict, lams, path: Path, zoom: int = 2) -> None:
    """Per task: input | target condition | ground truth | mask | guidance image | output for each lambda."""
    from semedit.world.sheets import grid, labelled

    blank = np.full((64, 64, 3), 255, np.uint8)
    cells, left = [], []
    for t in tasks:
        p = pictures[(t.kind, t.index)]
        mask = resize_square(np.repeat(p["mask"][..., None], 3, 2).astype(np.uint8) * 255, 64)
        cond = next(iter(t.controls.values()), blank)
        cells.append([t.edit.source_render.image, cond, t.edit.target_render.image, mask, p.get("guidance", blank),
                      *[p["outputs"][lam] for lam in lams]])
        left.append(f"{t.kind} -> {t.target_value}")
    img = Image.fromarray(grid(cells))
    img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    labelled(img, left, ["input", "condition", "truth", "mask", "guidance", *[f"lambda={v:g}" for v in lams]],
             66 * zoom, 2 * zoom).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10, help="tasks per kind")
    ap.add_argument("--kinds", default="expression,hair,glasses,costume,pose,scribble")
    ap.add_argument("--lams", default="0,0.2,0.4,0.6,0.8,1")
    ap.add_argument("--baselines", default="sdedit,diffedit,controlnet")
    ap.add_argument("--out", default="docs/images/ito")
    ap.add_argument("--set", dest="fields", action="append", default=[], metavar="FIELD=VALUE",
                    help="an ITO setting other than the paper's (repeatable), e.g. mask_threshold=0.5")
    ap.add_argument("--evaluator", default=None, help="evaluator folder (default: toon-64's)")
    ap.add_argument("--keep", default=None, metavar="FILE",
                    help="also keep the runs' outputs in FILE (a pickle), for --rejudge later")
    ap.add_argument("--rejudge", default=None, metavar="FILE",
                    help="run nothing: judge the outputs kept in FILE (by --keep) again, e.g. with a new --evaluator")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bb = load_backbone("toon-64")
    if args.rejudge:
        kept = pickle.loads(Path(args.rejudge).read_bytes())
    else:
        kept = run_study(args, bb, lambda msg: print(f"{msg} ({time.perf_counter() - t0:.0f} s)", flush=True))
        if args.keep:
            Path(args.keep).parent.mkdir(parents=True, exist_ok=True)
            Path(args.keep).write_bytes(pickle.dumps(kept))
    judge_study(kept, bb, load_evaluator(args.evaluator), out)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")


def run_study(args, bb, progress) -> dict:
    """Every ITO lambda and every baseline on the same tasks: rows with outputs (not yet judged)."""
    t0 = time.perf_counter()
    fields = {k: parse_setting("ito", k, v) for k, v in (f.split("=", 1) for f in args.fields)}
    kinds = [k for k in args.kinds.split(",") if k and all(c in bb.controlnets for c in make_task(k, 0).controls)]
    if skipped := set(args.kinds.split(",")) - set(kinds) - {""}:
        print(f"skipping {', '.join(sorted(skipped))}: the model has no ControlNet for it")
    lams = [float(v) for v in args.lams.split(",")]
    tasks = make_tasks(kinds, args.n)
    by_lam, pictures = sweep(bb, tasks, lams, fields, progress)
    runs = {f"ito λ={lam:g}": rows for lam, rows in by_lam.items()}
    for m in [b for b in args.baselines.split(",") if b]:
        runs[m] = run_method(m, bb, tasks)
        progress(f"{m} done")
    return {"n": args.n, "kinds": kinds, "lams": lams, "fields": fields, "runs": runs, "pictures": pictures,
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def judge_study(kept: dict, bb, ev, out: Path) -> None:
    """Score the kept runs with the evaluator (the backbone's CLIP for the CLIP columns); write sweep.md,
    sweep.json, the trade-off plots and the picture grid."""
    kinds, lams, runs = kept["kinds"], kept["lams"], kept["runs"]
    tasks = make_tasks(kinds, kept["n"])
    for rows in runs.values():
        score(rows, tasks, ev, bb.clip, bb.clip_processor)
    summary = {name: summarise(rows)[rows[0]["method"]] for name, rows in runs.items()}
    # the same task subset for every entry of a kind: text-only baselines skip layout kinds
    lines = ["| run | kind | n | success | MAE out | PSNR out | MAE gt | identity | U-Net evals | s / edit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_kind in summary.items():
        for k in [*kinds, "all"]:
            s = by_kind.get(k)
            if s:
                lines.append(f"| {name} | {k} | {s['n']} | {s['edit_success']:.2f} | {s['preservation_mae']:.4f} | "
                             f"{s['preservation_psnr']:.1f} | {s['gt_mae']:.4f} | {s['identity_agreement']:.2f} | "
                             f"{s['unet_evaluations']:.0f} | {s['seconds']:.2f} |")
    table = "\n".join(lines)
    print(table)
    (out / "sweep.md").write_text(table + "\n")
    (out / "sweep.json").write_text(json.dumps({"n": kept["n"], "kinds": kinds, "lams": lams,
                                                "ito_settings": kept["fields"], "summary": summary,
                                                "wall_seconds": kept.get("wall_seconds")}, indent=2))
    # one plot per kind of condition, so that every point is a mean over the same tasks
    text = [k for k in kinds if TASK_KINDS[k].condition == "text"]
    layout = [k for k in kinds if TASK_KINDS[k].condition != "text"]
    for scope, ks in (("text", text), ("layout", layout)):
        if not ks:
            continue
        pts = {lam: _mean(runs[f"ito λ={lam:g}"], ks) for lam in lams}
        base = {m: _mean(runs[m], ks) for m in runs if not m.startswith("ito") and _mean(runs[m], ks)}
        try:
            tradeoff_plot(pts, base, out / f"tradeoff_{scope}.png", f"{scope} tasks: {', '.join(ks)}")
        except ImportError:
            print("matplotlib not installed: no trade-off plot")
    picture_grid([t for t in tasks if t.index == 0], kept["pictures"], lams, out / "grid.png")


def _mean(rows, kinds) -> dict:
    done = [r for r in rows if "output" in r and r["kind"] in kinds]
    if not done:
        return {}
    return {k: float(np.mean([r[k] for r in done])) for k in ("edit_success", "preservation_mae")}


if __name__ == "__main__":
    main()

"""What limits ITO's preservation on toon-64, one setting at a time: ITO variants (each a set of ITOConfig fields
over the paper's defaults) against ControlNet-only and DiffEdit on a task set that is not the benchmark's (task
seed 1; the benchmark uses 0). Prints, per group of kinds (text, layout), edit success and MAE outside the true
region with their standard errors, identity agreement, and each variant's paired difference from its base (the
row it changes one thing of). Without --variant it runs STUDY, the study behind toon-64's ITO defaults
(docs/benchmark.md):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ito_tune.py --n 4 --out out/ito_tune
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ito_tune.py --variant "paper" --variant "t_u 25: update_steps=25"

The Eq. 7 soft map depends only on the mask's own settings: it is computed once per task and mask setting and
thresholded at each variant's tau, so a variant costs its edit alone. Everything is kept in OUT (rows.json,
soft_maps.npz): a stopped run resumes, and a new variant reuses the maps.

`--goal RESULTS` runs nothing: it checks a `semedit bench` run of ITO against the ControlNet-only and DiffEdit rows
of another run on the same tasks (the issue's bar: success at least ControlNet-only's minus 0.05, MAE outside the
true region at most halfway between DiffEdit's and ControlNet-only's), with paired differences.

    .venv/bin/python benchmarks/ito_tune.py --goal out/bench50_ito_a/results.json,out/bench50_ito_b/results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from semedit.engine.masks import resize, threshold
from semedit.eval.bench import KIND_GROUPS, make_tasks, run_method, score, task_request
from semedit.methods import make_config, run_edit
from semedit.methods.base import parse_setting
from semedit.methods.ito import request_edit_mask
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.world import resize_square
from study import mean_se

MASK_FIELDS = ("steps", "mask_mode", "mask_samples", "mask_encode_ratio", "mask_step", "mask_guidance_scale",
               "mask_blur_kernel", "encode_ratio", "negative_prompt", "controlnet_scale")
DEFAULT_KINDS = ",".join(["expression", "hair", "glasses", "costume", "background", "pose", "scribble"])
METRICS = ("edit_success", "preservation_mae", "identity_agreement")
# (variant, its base): each variant is "label: field=value, ..." over the paper's defaults
TAU = "tau 0.5: mask_threshold=0.5"
X5 = "mask_encode_ratio=0.5, mask_threshold=0.5"
STUDY = [
    ("paper", "paper"),
    *((f"tau {t}: mask_threshold={t}", "paper") for t in (0.3, 0.5, 0.7)),
    ("tau 0.5, t_u 25: mask_threshold=0.5, update_steps=25", TAU),
    ("tau 0.5, k 3: mask_threshold=0.5, grad_steps=3", TAU),
    ("tau 0.5, sgd: mask_threshold=0.5, optimizer=sgd", TAU),
    ("tau 0.5, lambda 1: mask_threshold=0.5, lam=1", TAU),
    ("tau 0.5, guidance t_u 20 k 30: mask_threshold=0.5, guidance_update_steps=20, guidance_grad_steps=30", TAU),
    ("tau 0.5, encode 0.8: mask_threshold=0.5, encode_ratio=0.8, mask_encode_ratio=1", TAU),
    ("tau 0.5, cfg 5: mask_threshold=0.5, guidance_scale=5", TAU),
    ("tau 0.5, direct mask at DiffEdit's level: mask_threshold=0.5, mask_mode=direct, mask_step=12", TAU),
    ("tau 0.5, mask from x_E at 0.5: mask_threshold=0.5, mask_encode_ratio=0.5", TAU),
    (f"x_E 0.5, tau 0.5, cfg 6: {X5}, guidance_scale=6", "tau 0.5, mask from x_E at 0.5: " + X5),
    (f"x_E 0.5, tau 0.5, cfg 5: {X5}, guidance_scale=5", "tau 0.5, mask from x_E at 0.5: " + X5),
    (f"x_E 0.5, tau 0.5, cfg 3: {X5}, guidance_scale=3", "tau 0.5, mask from x_E at 0.5: " + X5),
    ("x_E 0.5, tau 0.4, cfg 5: mask_encode_ratio=0.5, mask_threshold=0.4, guidance_scale=5",
     f"x_E 0.5, tau 0.5, cfg 5: {X5}, guidance_scale=5"),
    ("x_E 0.5, tau 0.6, cfg 5: mask_encode_ratio=0.5, mask_threshold=0.6, guidance_scale=5",
     f"x_E 0.5, tau 0.5, cfg 5: {X5}, guidance_scale=5"),
    ("tau 0.7, lambda 1: mask_threshold=0.7, lam=1", "tau 0.7: mask_threshold=0.7"),
    ("tau 0.7, guidance t_u 20 k 30: mask_threshold=0.7, guidance_update_steps=20, guidance_grad_steps=30",
     "tau 0.7: mask_threshold=0.7"),
]


def parse_variant(text: str) -> tuple[str, tuple]:
    """"label: field=value, field=value" (or just "label" for the paper's defaults) -> (label, sorted fields)."""
    label, _, spec = text.partition(":")
    fields = {}
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        key, _, value = item.partition("=")
        fields[key.strip()] = parse_setting("ito", key.strip(), value.strip())
    return label.strip(), tuple(sorted(fields.items()))


def soft_map(bb, req, task, config, cache: dict, key: str):
    """The task's Eq. 7 soft map (latent grid) under the config's mask settings, from the cache when there."""
    if key not in cache:
        _, soft = request_edit_mask(bb, req, config, task.seed)
        cache[key] = soft.numpy()
    return torch.from_numpy(cache[key])


def run_variant(bb, tasks, fields: dict, maps: dict, progress) -> list[dict]:
    config = make_config("ito", **fields)
    mask_key = json.dumps({f: getattr(config, f) for f in MASK_FIELDS}, sort_keys=True)
    rows = []
    for t in tasks:
        req = task_request(t, bb.image_size)
        soft = soft_map(bb, req, t, config, maps, f"{mask_key}|{t.kind}|{t.index}")
        req.mask = resize(threshold(soft, config.mask_threshold), (bb.image_size,) * 2)[0, 0].numpy() > 0
        res = run_edit("ito", bb, req, config, seed=t.seed)
        rows.append({"method": "ito", "kind": t.kind, "index": t.index, "output": resize_square(res.image, 64),
                     "mask_area": float(req.mask.mean()), "seconds": res.provenance["seconds"]})
        progress(f"{t.kind} {t.index}")
    return rows


def row_key(label: str, fields: tuple | None) -> str:
    return label if fields is None else json.dumps([label, dict(fields)], sort_keys=True, default=str)


def group_line(label, rows, base_rows, kinds) -> str:
    pick = [r for r in rows if r["kind"] in kinds and "edit_success" in r]
    if not pick:
        return ""
    cells = [mean_se([r[m] for r in pick]) for m in METRICS]
    base = {(r["kind"], r["index"]): r for r in base_rows if "edit_success" in r}
    for m in ("edit_success", "preservation_mae"):
        d = [r[m] - base[(r["kind"], r["index"])][m] for r in pick if (r["kind"], r["index"]) in base]
        cells.append(f"{np.mean(d):+.3f} ± {se(d):.3f}" if len(d) > 1 else "")
    area = [r["mask_area"] for r in pick if "mask_area" in r]
    cells.append(f"{np.mean(area):.2f}" if area else "")
    return f"| {label} | {len(pick)} | " + " | ".join(cells) + " |"


def se(values) -> float:
    v = np.asarray(values, float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def check_goal(ito_files: list[Path], against_file: Path) -> None:
    """Print ITO's success and MAE outside against ControlNet-only's and DiffEdit's on the tasks the runs hold."""
    runs = [json.loads(Path(f).read_text()) for f in (*ito_files, against_file)]
    if len({run["seed"] for run in runs}) > 1:  # a task is fixed by (seed, kind, index)
        raise SystemExit("the runs are not on the same task set (seed)")
    rows = {(r["method"], r["kind"], r["index"]): r for run in runs for r in run["tasks"] if "edit_success" in r}
    print("| kinds | method | n | success | MAE out | Δ success vs ControlNet-only | Δ MAE out vs ControlNet-only |")
    print("|---|---|---|---|---|---|---|")
    for group in ("text", "layout"):
        keys = sorted({(k, i) for m, k, i in rows if m == "ito" and k in KIND_GROUPS[group]})
        if not keys:
            continue
        means = {}
        for m in ("ito", "controlnet", "diffedit"):
            have = [key for key in keys if (m, *key) in rows]
            if not have:
                continue
            s = [rows[(m, *key)]["edit_success"] for key in have]
            e = [rows[(m, *key)]["preservation_mae"] for key in have]
            means[m] = (np.mean(s), np.mean(e))
            paired = [key for key in have if ("controlnet", *key) in rows]
            ds, de = ([rows[(m, *key)][f] - rows[("controlnet", *key)][f] for key in paired]
                      for f in ("edit_success", "preservation_mae"))
            diff = (f"{np.mean(ds):+.3f} ± {se(ds):.3f} | {np.mean(de):+.4f} ± {se(de):.4f}" if m != "controlnet"
                    else " | ")
            print(f"| {group} ({', '.join(sorted({k for k, _ in keys}))}) | {m} | {len(have)} | {np.mean(s):.3f} ± "
                  f"{se(s):.3f} | {np.mean(e):.4f} ± {se(e):.4f} | {diff} |")
        bar = means["controlnet"][0] - 0.05
        verdict = f"- {group}: success {means['ito'][0]:.3f} against the bar {bar:.3f}"
        if "diffedit" in means:
            half = (means["controlnet"][1] + means["diffedit"][1]) / 2
            verdict += f"; MAE out {means['ito'][1]:.4f} against halfway {half:.4f}"
        print(verdict)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4, help="tasks per kind")
    ap.add_argument("--kinds", default=DEFAULT_KINDS)
    ap.add_argument("--seed", type=int, default=1, help="task seed (the benchmark's is 0)")
    ap.add_argument("--variant", action="append", default=[], help='"label: field=value, ..." (repeatable; default: '
                    "STUDY); the first is the base of the paired differences")
    ap.add_argument("--baselines", default="controlnet,diffedit")
    ap.add_argument("--out", default="out/ito_tune")
    ap.add_argument("--goal", default=None, metavar="RESULTS", help="check these bench runs of ITO (comma-separated "
                    "results.json files); run nothing")
    ap.add_argument("--against", default="docs/bench_n50/results.json", help="the baselines' bench run for --goal")
    args = ap.parse_args()
    if args.goal:
        return check_goal([Path(f) for f in args.goal.split(",")], Path(args.against))
    study = STUDY if not args.variant else [(v, args.variant[0]) for v in args.variant]
    variants = {parse_variant(v): parse_variant(base) for v, base in study}  # {(label, fields): (label, fields)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_file, maps_file = out / "rows.json", out / "soft_maps.npz"
    kept = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    maps = dict(np.load(maps_file)) if maps_file.exists() else {}
    task_set = {"seed": args.seed, "n": args.n, "kinds": args.kinds}
    if kept.setdefault("_tasks", task_set) != task_set:
        raise SystemExit(f"{out} holds runs on another task set ({kept['_tasks']}): give another --out")
    bb, ev = load_backbone("toon-64"), load_evaluator()
    tasks = make_tasks(args.kinds.split(","), args.n, seed=args.seed)
    t0 = time.perf_counter()

    def progress(label):
        return lambda msg: print(f"{label}: {msg} ({time.perf_counter() - t0:.0f} s)", flush=True)

    todo = [(b, None) for b in args.baselines.split(",") if b] + list(variants)
    for label, fields in todo:
        key = row_key(label, fields)
        if key in kept and len(kept[key]) == len(tasks):
            continue
        rows = (run_method(label, bb, tasks, progress=lambda r: None) if fields is None
                else run_variant(bb, tasks, dict(fields), maps, progress(label)))
        score(rows, tasks, ev)
        for r in rows:
            r.pop("output", None)
        kept[key] = rows
        rows_file.write_text(json.dumps(kept, indent=1, default=float))
        np.savez_compressed(maps_file, **maps)
        print(f"{label} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    groups = {g: [k for k in args.kinds.split(",") if k in KIND_GROUPS[g]] for g in ("text", "layout")}
    for group, kinds in groups.items():
        if not kinds:
            continue
        print(f"\n**{group}** ({', '.join(kinds)}; n = {args.n} per kind, task seed {args.seed})\n")
        print("| run | n | success | MAE out | identity | Δ success vs base | Δ MAE out vs base | mask area |")
        print("|---|---|---|---|---|---|---|---|")
        for label, fields in todo:
            base = row_key(*variants[(label, fields)]) if fields is not None else row_key(*next(iter(variants)))
            if line := group_line(label, kept[row_key(label, fields)], kept[base], kinds):
                print(line)


if __name__ == "__main__":
    main()

"""The pixel-guidance paper's sensitivity study (§4.4, Fig. 7) on toon-64: pixelguide at t0 in {300, 500, 750}
and s in {40, 100, 200} on the map tasks of a task seed other than the benchmark's, split by ROI size (the
paper's 5,000 pixels at 256x256, scaled to 312 at 64x64). For each setting and group: the evaluator's
segmentation accuracy inside the ROI m of the result (mean ± standard error), the MAE outside m, and, as
Fig. 7 plots it, g_t's accuracy on the ROI at every guided step against the step's signal-to-noise ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixelguide_sensitivity.py --per-group 12 --seed 1 \
        --out docs/images/pixelguide

Writes sensitivity.json, sensitivity.md and sensitivity.png (needs matplotlib: pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from semedit.eval.bench import KIND_GROUPS, make_task, roi_of, task_request
from semedit.eval.metrics import mae
from semedit.methods import make_config, run_edit
from semedit.methods.pixelguide import scaled_large_roi
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.models.evaluator import segmentation_accuracy

T0S, SCALES = (300, 500, 750), (40.0, 100.0, 200.0)


def mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def tasks_by_roi_size(per_group: int, threshold: int, seed: int):
    """The first `per_group` map tasks (kinds in turn, indices 0, 1, ...) whose changed pixels are at most
    `threshold`, and the first `per_group` above it."""
    groups = {"small": [], "large": []}
    for index in range(200):
        for kind in KIND_GROUPS["map"]:
            task = make_task(kind, index, seed)
            changed = int((task.edit.source_render.seg != task.edit.target_render.seg).sum())
            group = groups["large" if changed > threshold else "small"]
            if len(group) < per_group:
                group.append(task)
        if all(len(g) == per_group for g in groups.values()):
            return groups["small"] + groups["large"]
    raise RuntimeError("not enough map tasks with a large ROI")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-group", type=int, default=12, help="tasks with a small and with a large ROI each, drawn "
                                                               "from the map kinds in turn")
    ap.add_argument("--seed", type=int, default=1, help="task seed (the benchmark's is 0)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    backbone, judge = load_backbone(), load_evaluator()
    threshold = scaled_large_roi(64)
    tasks = tasks_by_roi_size(args.per_group, threshold, args.seed)
    rows, t_start = [], time.perf_counter()
    for t0 in T0S:
        for s in SCALES:
            config = make_config("pixelguide", t0=t0, scale=s)
            for task in tasks:
                result = run_edit("pixelguide", backbone, task_request(task, backbone.image_size, "pixelguide"),
                                  config, seed=task.seed)
                m = roi_of(task)
                changed = int((task.edit.source_render.seg != task.edit.target_render.seg).sum())
                seg = judge.segment(result.image[None])[0]
                trace = result.intermediates["guidance_accuracy"].numpy()
                rows.append({"t0": t0, "scale": s, "kind": task.kind, "index": task.index,
                             "group": "large" if changed > threshold else "small", "changed_pixels": changed,
                             "accuracy_in_m": segmentation_accuracy(seg, task.edit.target_render.seg, m),
                             "mae_out_m": mae(result.image, task.edit.source_render.image, ~m),
                             "trace": trace.tolist()})
            print(f"t0={t0} s={s:g}: {len(tasks)} edits, {time.perf_counter() - t_start:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sensitivity.json").write_text(json.dumps({"per_group": args.per_group, "seed": args.seed,
                                                           "threshold": threshold, "rows": rows}, indent=1))
    lines = ["| group | t0 | s | n | seg acc in m (evaluator) | MAE out m |", "|---|---|---|---|---|---|"]
    for group in ("small", "large"):
        for t0 in T0S:
            for s in SCALES:
                sel = [r for r in rows if r["group"] == group and r["t0"] == t0 and r["scale"] == s]
                if not sel:
                    continue
                acc, acc_se = mean_se([r["accuracy_in_m"] for r in sel])
                err, err_se = mean_se([r["mae_out_m"] for r in sel])
                lines.append(f"| {group} | {t0} | {s:g} | {len(sel)} | {acc:.3f} ± {acc_se:.3f} | "
                             f"{err:.4f} ± {err_se:.4f} |")
    table = "\n".join(lines)
    (args.out / "sensitivity.md").write_text(table + "\n")
    print(table)
    plot(rows, backbone.scheduler_config, args.out / "sensitivity.png")


def plot(rows, scheduler_config, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semedit.engine.ddim import alphas_cumprod

    ac = alphas_cumprod(scheduler_config).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, group in zip(axes, ("small", "large")):
        for t0, colour in zip(T0S, ("tab:blue", "tab:orange", "tab:green")):
            for s, style in zip(SCALES, (":", "-", "--")):
                traces = [np.asarray(r["trace"]) for r in rows if r["group"] == group and r["t0"] == t0
                          and r["scale"] == s]
                if not traces:
                    continue
                ts = traces[0][:, 0].astype(int)
                acc = np.mean([t[:, 1] for t in traces], axis=0)
                ax.plot(ac[ts] / (1 - ac[ts]), acc, style, color=colour, label=f"t0={t0}, s={s:g}")
        ax.set_xscale("log")
        ax.set_xlabel("SNR of the step (alpha-bar / (1 - alpha-bar))")
        edits = len([r for r in rows if r["group"] == group]) // (len(T0S) * len(SCALES))
        ax.set_title(f"{group} ROI (n={edits} edits)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("g_t accuracy on the ROI (edited classes)")
    axes[1].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

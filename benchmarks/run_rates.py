"""Mean ± standard error (over tasks) of chosen metrics of a finished `semedit bench` run, per method, over
all its tasks and per task kind; with `--ceiling`, the evaluator's own segmentation accuracy on the
ground-truth edits inside each map task's ROI m (what a perfect edit would score).

    .venv/bin/python benchmarks/run_rates.py runs/bench_map10 \
        --metrics edit_success,roi_segmentation_accuracy --ceiling \
        --paired pixelguide
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def mean_se(values) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if not len(v):
        return "–"
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.3f} ± {se:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--metrics", default="edit_success,roi_segmentation_accuracy,preservation_mae")
    ap.add_argument("--ceiling", action="store_true")
    ap.add_argument("--paired", default=None, metavar="METHOD",
                    help="also METHOD minus each other method, task by task (mean ± standard error of the differences)")
    args = ap.parse_args()
    report = json.loads((args.run / "results.json").read_text())
    rows = [r for r in report["tasks"] if "skipped" not in r]
    metrics = args.metrics.split(",")
    kinds = report["kinds"]
    print(f"n per kind = {report['n']}, task seed {report['seed']}\n")
    print("| method | kind | n | " + " | ".join(metrics) + " |")
    print("|---|---|---|" + "---|" * len(metrics))
    for m in report["methods"]:
        for kind in ["all", *kinds]:
            sel = [r for r in rows if r["method"] == m and (kind == "all" or r["kind"] == kind)]
            if sel:
                cells = " | ".join(mean_se([r.get(k, np.nan) for r in sel]) for k in metrics)
                print(f"| {m} | {kind} | {len(sel)} | {cells} |")
    if args.paired:
        by = {(r["method"], r["kind"], r["index"]): r for r in rows}
        print(f"\n| {args.paired} minus | n | " + " | ".join(metrics) + " |\n|---|---|" + "---|" * len(metrics))
        for m in (m for m in report["methods"] if m != args.paired):
            keys = [k[1:] for k in by if k[0] == args.paired and (m, *k[1:]) in by]
            cells = " | ".join(mean_se([by[(args.paired, *k)].get(x, np.nan) - by[(m, *k)].get(x, np.nan)
                                        for k in keys]) for x in metrics)
            print(f"| {m} | {len(keys)} | {cells} |")
    if args.ceiling:
        from semedit.eval.bench import TASK_KINDS, make_tasks, roi_of
        from semedit.models.backbone import load_evaluator
        from semedit.models.evaluator import segmentation_accuracy

        judge = load_evaluator()
        tasks = [t for t in make_tasks(kinds, report["n"], report["seed"]) if TASK_KINDS[t.kind].condition == "map"]
        segs = judge.segment(np.stack([t.edit.target_render.image for t in tasks]))
        acc = [segmentation_accuracy(s, t.edit.target_render.seg, roi_of(t)) for s, t in zip(segs, tasks)]
        print(f"\nthe evaluator on the ground-truth edits, segmentation accuracy inside m: {mean_se(acc)} "
              f"(n = {len(acc)})")


if __name__ == "__main__":
    main()

"""Pixel classifiers on toon-64's U-Net features (the pixelguide method): held-out IoU against the number of
labelled renders, and which decoder blocks to read, each variant trained from scratch with the same
recipe (`semedit train pixel-classifiers`' defaults, 600 steps) on seeded renders and measured on the same
100 held-out renders.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixel_classifiers.py --labelled 2,5,10,30 --blocks 0,1,2 \
        --out runs/pixel_sweep
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixel_classifiers.py --labelled 10 --blocks 2 1,2 0,1,2 \
        --out runs/pixel_blocks

Prints a table: g_multi's mIoU and per-class IoU, g_t's mIoU at t = 101, 301, 501, 701, and the training time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from semedit.methods.pixelguide.train import PIXEL_TRAIN, PixelSetup, train_pixel_classifiers
from semedit.models.toon64 import TOON64_DIR
from semedit.world import SEG_CLASSES


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", default="2,5,10,30")
    ap.add_argument("--blocks", nargs="+", default=["0,1,2"], help="decoder block sets, e.g. 2 1,2 0,1,2")
    ap.add_argument("--steps", type=int, default=PIXEL_TRAIN.steps)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for blocks in args.blocks:
        for n in (int(v) for v in args.labelled.split(",")):
            name = f"blocks{blocks.replace(',', '')}_n{n}"
            setup = PixelSetup(blocks=tuple(int(b) for b in blocks.split(",")))
            cfg = dataclasses.replace(PIXEL_TRAIN, steps=args.steps, seed=args.seed)
            done = args.out / name / "report.json"
            t0 = time.perf_counter()
            if done.exists():  # resumable sweep: a finished variant is read back
                report = json.loads(done.read_text())
            else:
                report = train_pixel_classifiers(TOON64_DIR, args.out / name, None, n, args.heldout, cfg, setup)
            report["wall_seconds"] = round(time.perf_counter() - t0, 1)
            rows.append((blocks, n, report))
            print(f"{name}: g_multi mIoU {report['g_multi']['miou']:.3f}", flush=True)
    shown = [c for c in SEG_CLASSES]
    print("\n| blocks | labelled | g_multi mIoU | " + " | ".join(shown) + " | g_t mIoU t=101/301/501/701 | train s |")
    print("|---|---|---|" + "---|" * len(shown) + "---|---|")
    for blocks, n, r in rows:
        per = r["g_multi"]["per_class"]
        gt = "/".join(f"{r['g_t'].get(str(t), r['g_t'].get(t, float('nan'))):.2f}" for t in (101, 301, 501, 701))
        cells = " | ".join(f"{per[c]:.2f}" if c in per else "–" for c in shown)
        print(f"| {blocks} | {n} | {r['g_multi']['miou']:.3f} | {cells} | {gt} | {r['train_seconds_this_run']:.0f} |")
    (args.out / "sweep.json").write_text(json.dumps([{"blocks": b, "labelled": n, **r} for b, n, r in rows], indent=1))


if __name__ == "__main__":
    main()

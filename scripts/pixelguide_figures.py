"""The pictures of docs/pixelguide.md: pixelguide on the benchmark's map tasks (input, the input's map, the
edited map, the ROI, the result, the result's map by g_multi, the ground truth, the baselines of the same
task as `semedit bench` ran them) and an interpolation (§4.3, Fig. 6).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/pixelguide_figures.py --bench runs/bench_map10 \
        --out docs/images/pixelguide
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from semedit.eval.bench import KIND_GROUPS, make_task, task_request
from semedit.methods import make_config, run_edit
from semedit.models.backbone import load_backbone
from semedit.world import colourise_seg
from semedit.world.sheets import grid, labelled, zoom_nearest

BASELINES = ("sdedit", "diffedit", "ito", "controlnet")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, required=True, help="a finished `semedit bench --tasks map` run")
    ap.add_argument("--index", type=int, default=0, help="which task of each kind")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    backbone = load_backbone()
    kept = np.load(args.bench / "outputs.npz")
    cells, left = [], []
    for kind in KIND_GROUPS["map"]:
        task = make_task(kind, args.index)
        r = run_edit("pixelguide", backbone, task_request(task, 64, "pixelguide"), seed=task.seed)
        roi = np.repeat((r.mask[..., None] > 0) * 255, 3, axis=2).astype(np.uint8)
        baselines = [kept.get(f"{m}/{kind}/{args.index}", np.full((64, 64, 3), 255, np.uint8)) for m in BASELINES]
        cells.append([task.edit.source_render.image, colourise_seg(r.intermediates["source_map"]),
                      colourise_seg(r.intermediates["edited_map"]), roi, r.image,
                      colourise_seg(r.intermediates["result_map"]), task.edit.target_render.image, *baselines])
        left.append(f"{kind} -> {task.target_value}")
    top = ["input", "input map", "edited map", "ROI", "pixelguide", "its map", "ground truth",
           "SDEdit strokes", "DiffEdit", "ITO", "ControlNet scribble"]
    args.out.mkdir(parents=True, exist_ok=True)
    labelled(zoom_nearest(grid(cells), 2), left, top, 132, 4).save(args.out / "edits.png")
    task = make_task("map-hair", args.index)
    r = run_edit("pixelguide", backbone, task_request(task, 64, "pixelguide"),
                 make_config("pixelguide", interpolation_frames=7), seed=task.seed)
    strip = r.intermediates["interpolation"]
    frames = [strip[:, i * 64:(i + 1) * 64] for i in range(strip.shape[1] // 64)]
    labelled(zoom_nearest(grid([[task.edit.source_render.image, *frames, r.image]]), 2),
             [f"hair -> {task.target_value}"], ["input", *[f"w={w:.2f}" for w in np.linspace(0, 1, 7)], "edit"],
             132, 4).save(args.out / "interpolation.png")
    print(f"wrote {args.out / 'edits.png'}, {args.out / 'interpolation.png'}")


if __name__ == "__main__":
    main()

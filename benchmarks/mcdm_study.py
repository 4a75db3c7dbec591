"""MCDM on the toon benchmark's paired-direction tasks (pair-costume, pair-expression: normal costume or neutral
expression to one of the four targets its model is trained for), as the paper's Table 1: SSIM and Fréchet
distance against the ground truth per task, plus success, identity agreement and MAE outside the true region by
the evaluator, and seconds per edit (also in units of one text-to-image run measured in the same process);
baselines SDEdit 0.5 and 0.8, DiffEdit, ITO and ControlNet-only; MCDM without its mask, and any other trained
MCDM given with --model LABEL=FOLDER (the ablations, the model trained on the world's ground-truth pairs). A
picture grid like Fig. 9 (input, each row's output, ground truth).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mcdm_study.py table --n 10 --out out/mcdm_study
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mcdm_study.py table --n 10 --out out/mcdm_study \
        --model "MCDM on world pairs=runs/mcdm-world/model" --rows "MCDM on world pairs"
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mcdm_study.py grid --out out/mcdm_study --picture docs/mcdm/grid.png

Every row runs on the same tasks and seeds (the benchmark's, seed 0); MCDM's mask threshold lambda is its default,
the supplementary's per task (0.2 costume, 0.35 expression). Rows are kept in OUT (rows.json, outputs.npz), so a
stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from study import header, kind_table, run_study

from semedit.eval.bench import KIND_GROUPS, make_tasks
from semedit.eval.metrics import frechet_distance

ROWS = {  # label: (method, settings)
    "SDEdit 0.5": ("sdedit", {"strength": 0.5}),
    "SDEdit 0.8": ("sdedit", {"strength": 0.8}),
    "DiffEdit": ("diffedit", {}),
    "ITO": ("ito", {}),
    "ControlNet-only": ("controlnet", {}),
    "MCDM w/o Mask": ("mcdm", {"mask_guided": False}),
    "MCDM": ("mcdm", {}),
}
METRICS = [("gt_ssim", "SSIM to ground truth ↑"), ("edit_success", "success ↑"), ("identity_agreement", "identity ↑"),
           ("preservation_mae", "MAE outside ↓")]


def table(args):
    rows_def = dict(ROWS)
    for item in args.model:
        label, _, folder = item.partition("=")
        rows_def[label] = ("mcdm", {"trained_model": folder})
    kinds = KIND_GROUPS["pairs"]
    ev, tasks, kept, outputs, reference = run_study(args, rows_def, kinds)
    lines = [header(args.n, kept["_unit_seconds"], " (the ground truth's own is the floor at this n)")]
    for kind in kinds:
        kind_tasks = [t for t in tasks if t.kind == kind]
        gt = frechet_distance(ev.features_of(np.stack([t.edit.target_render.image for t in kind_tasks])), reference)
        lines += [f"\n**{kind}** (ground truth's Fréchet distance: {gt:.1f})\n",
                  *kind_table(kept, outputs, kind, ev, reference, METRICS)]
    (Path(args.out) / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def grid(args):
    """Fig. 9: two tasks of each direction's task kind: input, each row's output, ground truth."""
    from semedit.world.sheets import grid as grid_of, labelled, zoom_nearest

    out = Path(args.out)
    kept = json.loads((out / "rows.json").read_text())
    outputs = np.load(out / "outputs.npz")
    labels = [k for k in kept if not k.startswith("_")]
    cells, left = [], []
    for task in make_tasks(KIND_GROUPS["pairs"], args.per_kind, seed=0):
        row = [task.edit.source_render.image]
        row += [outputs[f"{label}/{task.kind}/{task.index}"] for label in labels]
        cells.append(row + [task.edit.target_render.image])
        left.append(f"{task.kind[5:]} -> {task.target_value}")
    img = labelled(zoom_nearest(grid_of(cells), 2), left, ["input", *labels, "ground truth"], 64 * 2, 4)
    img.save(args.picture)
    print("picture:", args.picture)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["table", "grid"])
    ap.add_argument("--n", type=int, default=10, help="tasks per kind")
    ap.add_argument("--out", default="out/mcdm_study")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=FOLDER",
                    help="another trained MCDM as a row (repeatable)")
    ap.add_argument("--rows", default=None, help="only these rows (comma-separated labels)")
    ap.add_argument("--per-kind", type=int, default=3)
    ap.add_argument("--picture", default="docs/mcdm/grid.png")
    args = ap.parse_args()
    table(args) if args.what == "table" else grid(args)


if __name__ == "__main__":
    main()

"""Tuning layered / imagic settings on the compound tasks of the dev task seed 1 (never the benchmark's seed 0):
N tasks of each kind, one method, settings as NAME=VALUE pairs; prints success (both changes), subject ✓,
background ✓, identity, CLIP score, MAE to the ground truth and seconds, each with its standard error.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layered_tune.py 4 layered "embedding_steps=100,finetune_lr=1e-5"
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layered_tune.py 4 imagic ""
"""

import sys

import numpy as np

from semedit.eval.bench import make_tasks, run_method, score
from semedit.methods import make_config
from semedit.methods.base import parse_setting
from semedit.models.backbone import load_backbone, load_evaluator

KINDS = ["compound-costume", "compound-expression", "compound-hair"]
KEYS = ["edit_success", "subject_success", "background_success", "identity_agreement", "clip_score", "gt_mae",
        "seconds"]

if __name__ == "__main__":
    n, method = int(sys.argv[1]), sys.argv[2]
    settings = {}
    for item in filter(None, sys.argv[3].split(",") if len(sys.argv) > 3 else []):
        name, value = item.split("=")
        settings[name] = parse_setting(method, name, value)
    bb, ev = load_backbone("toon-64"), load_evaluator()
    tasks = make_tasks(KINDS, n, seed=1)
    rows = run_method(method, bb, tasks, make_config(method, **settings))  # the paper's defaults under `settings`
    score(rows, tasks, ev, bb.clip, bb.clip_processor)
    cells = []
    for k in KEYS:
        v = np.array([r[k] for r in rows])
        cells.append(f"{k}={v.mean():.3f}±{v.std(ddof=1) / np.sqrt(len(v)):.3f}")
    print(method, settings, f"n={len(rows)}", " ".join(cells), flush=True)

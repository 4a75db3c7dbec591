"""Two evaluators on the same generated images: how often each finds the prompted value of one
attribute, how often they agree, and what each confuses it with.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/judge_agreement.py --other OLD_EVALUATOR_DIR [--attribute face_shape]

The images are `toon64_quality.py --parts unet`'s (the same prompts and seeds), only those whose
prompt names the attribute. `OLD_EVALUATOR_DIR` is any evaluator folder, e.g. an earlier committed one:
`git show REV:src/semedit/models/toon64/evaluator/<file>` for its config.json and safetensors.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from semedit.models.backbone import load_backbone, load_evaluator
from semedit.world import sample_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toon64_quality import generate  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", required=True, help="the second evaluator folder")
    ap.add_argument("--evaluator", default=None, help="the first (default: toon-64's)")
    ap.add_argument("--attribute", default="face_shape")
    ap.add_argument("--n-prompts", type=int, default=500)
    args = ap.parse_args()
    bb = load_backbone("toon-64")
    pipe = bb.pipeline()
    pipe.set_progress_bar_config(disable=True)
    picked = [(i, prompt, named[args.attribute]) for i in range(args.n_prompts)
              for prompt, named in [sample_prompt(10_000 + i)] if args.attribute in named]
    seeds, prompts, wanted = zip(*picked)
    images = generate(pipe, prompts, list(seeds), 50, 7.5)
    judges = {"evaluator": load_evaluator(args.evaluator), "other": load_evaluator(args.other)}
    read = {name: [p[args.attribute] for p in ev.predict(images)] for name, ev in judges.items()}
    print(f"\n{len(wanted)} images whose prompt names {args.attribute}\n")
    print("| judge | finds the prompted value | most common misses (prompted -> read) |\n|---|---|---|")
    for name, values in read.items():
        hit = np.mean([v == w for v, w in zip(values, wanted)])
        misses = collections.Counter((w, v) for v, w in zip(values, wanted) if v != w).most_common(4)
        print(f"| {name} | {hit:.1%} | " + ", ".join(f"{w} -> {v}: {c}" for (w, v), c in misses) + " |")
    agree = np.mean([a == b for a, b in zip(*read.values())])
    print(f"\nthe two judges agree on {agree:.1%}")


if __name__ == "__main__":
    main()

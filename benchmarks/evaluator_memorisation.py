"""Does the evaluator read VAE reconstructions it trained on better than unseen ones (memorisation)?

    .venv/bin/python benchmarks/evaluator_memorisation.py [--evaluator DIR] [--seen 0:1000] [--unseen 9000:10000]

Judges renders and VAE reconstructions of two slices of the training cache: one whose
reconstructions the evaluator trained on, one whose it did not. With the previous recipe (only the
first 8,000 training images as reconstructions) `--unseen 9000:10000` is unseen; with today's (all)
every training image is seen, so compare against the held-out figures of `toon64_quality.py` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from semedit.models.backbone import load_evaluator
from semedit.models.evaluator import attribute_accuracy
from semedit.models.toon64 import TOON64_DIR
from semedit.models.vae import reconstruct
from semedit.training.data import RenderCache

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluator", default=None, help="evaluator folder (default: toon-64's)")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    ap.add_argument("--seen", default="0:1000")
    ap.add_argument("--unseen", default="9000:10000")
    args = ap.parse_args()
    vae = AutoencoderKL.from_pretrained(TOON64_DIR / "vae", torch_dtype=torch.float32)
    judge = load_evaluator(args.evaluator)
    train = RenderCache(Path(args.cache) / "train")
    cols = {}
    for name, span in (("seen", args.seen), ("unseen", args.unseen)):
        sl = slice(*map(int, span.split(":")))
        renders, records = np.asarray(train.arrays["image"][sl]), train.records[sl]
        cols[f"renders {span}"] = attribute_accuracy(judge.predict(renders), records)
        cols[f"reconstructions {span} ({name})"] = attribute_accuracy(judge.predict(reconstruct(vae, renders)),
                                                                      records)
    print("| attribute | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for attr in next(iter(cols.values())):
        print(f"| {attr} | " + " | ".join(f"{100 * c[attr]:.1f}%" for c in cols.values()) + " |")


if __name__ == "__main__":
    main()

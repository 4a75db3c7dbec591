"""Is a CLIP's zero-shot accuracy limited by its image features or by their alignment with the text?

    .venv/bin/python benchmarks/clip_probe.py [--clip DIR] [--n-train 8000]

Fits a linear probe (multinomial logistic regression, L-BFGS) per attribute on the vision tower's
projected image embeddings of `--n-train` training renders and reports its held-out accuracy (1,000
renders) next to the zero-shot accuracy on the same images. A probe not far above zero-shot means
the features, not the alignment, are the limit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semedit.eval.clip_metrics import zero_shot_accuracy
from semedit.models.text import image_embeddings
from semedit.training.data import RenderCache
from semedit.world import CATEGORICAL, observable

ROOT = Path(__file__).resolve().parent.parent
ATTRIBUTES = ("expression", "glasses", "eyes", "mouth", "beard", "hair_colour")


def linear_probe(x_train, y_train, x_test, k: int, l2: float = 1e-4) -> torch.Tensor:
    """Predicted classes of `x_test` by a logistic regression fitted on standardised `x_train`."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(x_train.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x_train @ w + b, y_train) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (x_test @ w + b).argmax(1)


def main():
    from transformers import CLIPModel, CLIPTokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(ROOT / "src" / "semedit" / "models" / "toon64" / "clip"))
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    ap.add_argument("--n-train", type=int, default=8000)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(args.clip, torch_dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(args.clip)
    train, held = RenderCache(Path(args.cache) / "train"), RenderCache(Path(args.cache) / "heldout")
    tr_img, tr_rec = np.asarray(train.arrays["image"][:args.n_train]), train.records[:args.n_train]
    ho_img, ho_rec = np.asarray(held.arrays["image"][:1000]), held.records[:1000]
    x_train, x_test = image_embeddings(model, tr_img), image_embeddings(model, ho_img)
    zero_shot = zero_shot_accuracy(model, tokenizer, ho_img, ho_rec, ATTRIBUTES)
    print("| attribute | zero-shot | linear probe |\n|---|---|---|")
    for attr in ATTRIBUTES:
        values = CATEGORICAL[attr]
        k_tr = np.array([observable(r)[attr] for r in tr_rec])
        k_ho = np.array([observable(r)[attr] for r in ho_rec])
        y_tr = torch.tensor([values.index(getattr(r, attr)) for r in tr_rec])[k_tr]
        y_ho = torch.tensor([values.index(getattr(r, attr)) for r in ho_rec])[k_ho]
        pred = linear_probe(x_train[k_tr], y_tr, x_test[k_ho], len(values))
        print(f"| {attr} | {zero_shot[attr]:.1%} | {float((pred == y_ho).float().mean()):.1%} |")


if __name__ == "__main__":
    main()

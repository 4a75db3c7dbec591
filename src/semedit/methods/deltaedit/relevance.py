"""The relevance matrix R_s (DeltaEdit §3.2 "Disentanglement"): for each channel of S, the direction in which
moving it moves the CLIP image embedding. The official code loads StyleCLIP's fs3 without saying how it was made;
semedit computes it by StyleCLIP's global-direction recipe: for each channel c and each of N images, decode s with
s_c at -alpha and +alpha standard deviations of the channel (over those images), take the difference of the two
unit-norm CLIP embeddings, normalise it, average over the images and normalise again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ...models.images import to_tensor
from ...models.text import image_features
from .mapper import RELEVANCE_FILE

RELEVANCE_ALPHA = 5.0  # StyleCLIP: +-5 sigma


@torch.no_grad()
def relevance_matrix(generator, encoder, clip, images: np.ndarray, alpha: float = RELEVANCE_ALPHA,
                     progress=None) -> torch.Tensor:
    """R_s (style_dim x CLIP dim, unit rows) over the uint8 `images` (inverted by the encoder)."""
    w_plus = encoder(to_tensor(images))
    s = generator.styles(w_plus)
    sigma = s.std(0) if len(s) > 1 else s.abs().mean(0)
    n = len(s)
    rows = []
    for c in range(s.shape[1]):
        moved = s.repeat(2, 1)
        moved[:n, c] -= alpha * sigma[c]
        moved[n:, c] += alpha * sigma[c]
        e = image_features(clip, generator.synthesis(moved, w_plus.repeat(2, 1, 1)).clamp(-1, 1))
        d = F.normalize(e[n:] - e[:n], dim=-1)
        rows.append(F.normalize(d.mean(0), dim=-1))
        if progress is not None:
            progress(c + 1, s.shape[1])
    return torch.stack(rows)


def save_relevance(relevance: torch.Tensor, folder: str | Path, meta: dict) -> Path:
    path = Path(folder) / RELEVANCE_FILE
    tmp = path.with_suffix(".tmp")
    save_file({"relevance": relevance.contiguous().half()}, tmp, metadata={k: str(v) for k, v in meta.items()})
    tmp.replace(path)
    return path


def load_relevance(folder: str | Path, device: str | torch.device = "cpu") -> torch.Tensor:
    path = Path(folder) / RELEVANCE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no relevance matrix R_s in {folder}; compute it with `semedit deltaedit relevance`")
    return load_file(path)["relevance"].float().to(device)

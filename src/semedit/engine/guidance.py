"""Classifier-free guidance over several conditions.

`nested_guidance` is the general form of the MCDM paper's Eq. 1: with noise predictions for the
nested conditions  e_0 = eps(null), e_1 = eps(c1), e_2 = eps(c1, c2), ..., e_K = eps(c1..cK),

    eps = e_0 + sum_k s_k (e_k - e_{k-1}),

so all scales 1 give the fully conditioned prediction, and K = 1 is ordinary CFG.
`composed_guidance` is the MCDM paper's Eq. 2 (composable diffusion with spatial masks): a
weighted, masked sum of guided predictions  eps = sum_j s_j M_j * eps~_j  (the paper's pair
canvas: s'_d = 0.1 on the whole canvas, s'_a = s'_b = 0.9 on the left / right half, supp. §1.1).
"""

from __future__ import annotations

from typing import Sequence

import torch


def nested_guidance(preds: Sequence[torch.Tensor], scales: Sequence[float]) -> torch.Tensor:
    """preds = [e_0, e_1, ..., e_K] (nested conditions), scales = [s_1, ..., s_K]."""
    if len(preds) != len(scales) + 1:
        raise ValueError(f"need one scale per condition: {len(preds)} predictions, {len(scales)} scales")
    out = preds[0]
    for k, s in enumerate(scales, start=1):
        out = out + s * (preds[k] - preds[k - 1])
    return out


def composed_guidance(guided: Sequence[torch.Tensor], weights: Sequence[float],
                      masks: Sequence[torch.Tensor | float]) -> torch.Tensor:
    """sum_j weights[j] * masks[j] * guided[j] (masks broadcast over the latents; 1.0 = everywhere)."""
    if not len(guided) == len(weights) == len(masks) or not guided:
        raise ValueError("guided, weights and masks must be non-empty and of the same length")
    return sum(w * m * e for e, w, m in zip(guided, weights, masks))

"""Metrics over images and features."""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N x D), as in FID."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # nearly singular: regularise, as pytorch-fid does
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def edge_f_score(pred: np.ndarray, target: np.ndarray, tolerance: int = 1) -> float:
    """F-score of two binary edge maps (HxW, nonzero = edge), where an edge pixel counts as matched
    if the other map has an edge within `tolerance` pixels (Chebyshev distance)."""
    p, t = np.asarray(pred) > 0, np.asarray(target) > 0

    def dilate(m):
        out = m.copy()
        h, w = m.shape
        for dy in range(-tolerance, tolerance + 1):
            for dx in range(-tolerance, tolerance + 1):
                out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= \
                    m[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    if not p.any() and not t.any():
        return 1.0
    precision = (p & dilate(t)).sum() / max(p.sum(), 1)
    recall = (t & dilate(p)).sum() / max(t.sum(), 1)
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))

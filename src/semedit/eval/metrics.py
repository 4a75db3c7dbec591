"""Metrics over images and features."""

from __future__ import annotations

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N x D), as in FID."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a Fréchet distance needs finite features")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
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


def _region(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape[:2], bool)
    m = np.asarray(mask) > 0
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask {m.shape} does not match image {shape[:2]}")
    if not m.any():
        raise ValueError("mask is empty")
    return m


def mae(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    """Mean absolute error of uint8 images in [0, 1] units, over the mask's pixels if given."""
    m = _region(mask, a.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64))[m].mean() / 255.0)


def psnr(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    """PSNR in dB of uint8 images over the mask's pixels (inf when identical there)."""
    m = _region(mask, a.shape)
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[m].mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    """SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) of uint8 RGB images,
    the SSIM map averaged over channels and over the mask's pixels."""
    from scipy.ndimage import gaussian_filter

    m = _region(mask, a.shape)
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda z: gaussian_filter(z, sigma=(1.5, 1.5, 0), truncate=3.5)  # noqa: E731  (11 x 11 window)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean(axis=-1)[m].mean())

import numpy as np
import pytest

from semedit.eval.metrics import edge_f_score, frechet_distance, mae, psnr, ssim


def _img(seed):
    return (np.random.default_rng(seed).random((32, 32, 3)) * 255).astype(np.uint8)


def test_pixel_metrics_and_masks():
    a = _img(0)
    b = a.copy()
    b[:, 16:] = 255 - b[:, 16:]
    left = np.zeros((32, 32), bool)
    left[:, :16] = True
    far = np.zeros((32, 32), bool)
    far[:, :10] = True  # beyond the 11 x 11 SSIM window of the changed half
    assert mae(a, b, left) == 0 and psnr(a, b, left) == float("inf") and ssim(a, b, far) == pytest.approx(1.0)
    assert ssim(a, b, left) < 1.0  # near the change, windows see it
    assert mae(a, b) > 0.1 and psnr(a, b) < 15 and ssim(a, b) < ssim(a, b, left)
    assert mae(a, a) == 0 and ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 8, a.shape), 0, 255).astype(np.uint8)
    assert 28 < psnr(a, noisy) < 32  # sigma 8 noise: about 30 dB
    with pytest.raises(ValueError, match="empty"):
        mae(a, b, np.zeros((32, 32)))
    with pytest.raises(ValueError, match="does not match"):
        psnr(a, b, np.ones((16, 16)))


def test_frechet_and_edges():
    r = np.random.default_rng(0)
    x, y = r.normal(size=(500, 8)), r.normal(size=(500, 8))
    assert frechet_distance(x, y) < 0.5 < frechet_distance(x, y + 1.0)
    e = np.zeros((10, 10))
    e[5] = 1
    shifted = np.zeros((10, 10))
    shifted[6] = 1
    assert edge_f_score(e, shifted, tolerance=1) == 1.0 and edge_f_score(e, shifted, tolerance=0) == 0.0

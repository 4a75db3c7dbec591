"""U-Net decoder features per pixel: hooks on chosen decoder blocks, upsampled to one grid and
concatenated (DatasetDDPM / the pixel-guidance paper §3: pixel classifiers read these)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


@contextmanager
def decoder_features(unet, blocks: list[int]):
    """Within the context, every U-Net call stores the outputs of `unet.up_blocks[i]` for i in
    `blocks` in the yielded dict {i: tensor}, keeping the autograd graph (for guidance)."""
    n = len(unet.up_blocks)
    bad = [i for i in blocks if not 0 <= i < n]
    if bad:
        raise ValueError(f"decoder blocks {bad} do not exist; this U-Net has up_blocks 0..{n - 1}")
    store: dict[int, torch.Tensor] = {}
    hooks = [unet.up_blocks[i].register_forward_hook(lambda m, a, out, i=i: store.__setitem__(i, out))
             for i in blocks]
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


def pixel_features(store: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Concatenate stored block outputs, bilinearly upsampled to `size`: (B, sum C_i, H, W)."""
    if not store:
        raise ValueError("no features were stored: call the U-Net inside decoder_features()")
    return torch.cat([F.interpolate(store[i], size=size, mode="bilinear", align_corners=False)
                      for i in sorted(store)], dim=1)

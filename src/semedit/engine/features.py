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


def noise_and_features(unet, blocks: list[int], x: torch.Tensor, t, text: torch.Tensor):
    """The U-Net's noise prediction for x at t (one timestep, or one per latent) under the text embeddings
    (1, L, D), and the outputs of its decoder blocks `blocks` ({i: tensor}, autograd graph kept)."""
    timesteps = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
    with decoder_features(unet, blocks) as store:
        eps = unet(x, timesteps, encoder_hidden_states=text.expand(x.shape[0], -1, -1)).sample
    return eps, dict(store)


def pixel_features(store: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Concatenate stored block outputs, bilinearly upsampled to `size`: (B, sum C_i, H, W)."""
    if not store:
        raise ValueError("no features were stored: call the U-Net inside decoder_features()")
    return torch.cat([F.interpolate(store[i], size=size, mode="bilinear", align_corners=False)
                      for i in sorted(store)], dim=1)


def features_at(store: dict[int, torch.Tensor], size: tuple[int, int], rows: torch.Tensor,
                cols: torch.Tensor) -> torch.Tensor:
    """`pixel_features(store, size)` at N pixels of each batch entry (`rows`, `cols`: B x N), as B x N x sum C_i,
    without upsampling whole maps: bilinear samples at the pixel centres (the same values), so a dataset's
    pixel features are read a few at a time instead of all at once."""
    if not store:
        raise ValueError("no features were stored: call the U-Net inside decoder_features()")
    h, w = size
    grid = torch.stack([(cols + 0.5) / w * 2 - 1, (rows + 0.5) / h * 2 - 1], dim=-1)[:, :, None]  # B x N x 1 x 2
    return torch.cat([F.grid_sample(store[i], grid.to(store[i].dtype), mode="bilinear", padding_mode="border",
                                    align_corners=False)[..., 0].transpose(1, 2) for i in sorted(store)], dim=2)

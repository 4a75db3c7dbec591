"""Edit masks: contrasting noise predictions under two conditions (DiffEdit; ITO paper Eq. 7;
MCDM paper supp. §1.3) and the mask operations methods compose them from. Masks are float
tensors (B, 1, H, W) with values in [0, 1]; binary masks hold only 0 and 1."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .conditioning import EditConditions, predict_noise
from .ddim import q_sample, seeded_noise
from .guidance import nested_guidance


def noise_difference(eps_a: torch.Tensor, eps_b: torch.Tensor, samples: int = 1) -> torch.Tensor:
    """|eps_a - eps_b| averaged over channels and over `samples` consecutive batch entries (the n
    seeds of Eq. 7): (samples * B, C, h, w) -> (B, 1, h, w)."""
    d = (eps_a - eps_b).abs().mean(dim=1, keepdim=True)
    if d.shape[0] % samples:
        raise ValueError(f"batch {d.shape[0]} is not a multiple of samples={samples}")
    return d.reshape(-1, samples, *d.shape[1:]).mean(dim=1)


def check_mask_inputs(z0: torch.Tensor, samples: int) -> None:
    if z0.shape[0] != 1:
        raise ValueError(f"the edit mask takes one latent (batch 1), got batch {z0.shape[0]}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


def estimate_edit_mask(backbone, z0: torch.Tensor, schedule, level: int, conds: EditConditions, samples: int,
                       seed: int, guidance_scale: float = 1.0) -> torch.Tensor:
    """The raw edit map of one input latent z0 (1, C, h, w): z0 is encoded with `samples` random
    noises (one seeded generator) to sampling level `level`, the U-Net predicts the noise under C_0
    and C_EDIT (`conds`: text, layout or both), and |eps_edit - eps_source| is averaged over channels
    and samples (DiffEdit's mask; ITO paper Eq. 7, which contrasts layout conditions too). Returns the
    (1, 1, h, w) map, not normalised.

    With `guidance_scale != 1` each prediction is classifier-free guided against its null branch, as
    diffusers' DiffEdit `generate_mask` does; all branches go through the U-Net in one batch."""
    check_mask_inputs(z0, samples)
    guided = float(guidance_scale) != 1.0
    x = q_sample(z0, seeded_noise((samples, *z0.shape[1:]), seed, z0), schedule.alphas[level])
    preds = predict_noise(backbone, x, schedule.timesteps[level], conds.branches(guided))
    if guided:  # [null_0, C_0, (null_EDIT,) C_EDIT]
        null_src, e_src, *rest = preds
        null_edit, e_edit = rest if len(rest) == 2 else (null_src, rest[0])
        e_src = nested_guidance([null_src, e_src], [guidance_scale])
        e_edit = nested_guidance([null_edit, e_edit], [guidance_scale])
    else:
        e_src, e_edit = preds
    return noise_difference(e_edit, e_src, samples=samples)


def user_mask(mask: np.ndarray, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """A user's HxW mask (nonzero = may change) as a binary (1, 1, h, w) mask on the latent grid, on
    `like`'s device and dtype (a latent cell may change if any of its pixels may)."""
    return resize(torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None], size).to(like)


def normalise(m: torch.Tensor, mode: str = "minmax", clamp_ratio: float = 3.0) -> torch.Tensor:
    """To [0, 1] per mask: "minmax" (MCDM supp. §1.3, ITO) or "mean_clamp" (diffusers' DiffEdit:
    clamp at mean x ratio, then divide)."""
    flat = m.flatten(1)
    if mode == "minmax":
        lo, hi = flat.min(1).values, flat.max(1).values
        return (m - lo.view(-1, 1, 1, 1)) / (hi - lo).clamp_min(1e-12).view(-1, 1, 1, 1)
    if mode == "mean_clamp":
        c = (flat.mean(1) * clamp_ratio).view(-1, 1, 1, 1)
        return torch.minimum(m.clamp_min(0), c) / c.clamp_min(1e-12)
    raise ValueError(f"mode must be 'minmax' or 'mean_clamp', got {mode!r}")


def gaussian_blur(m: torch.Tensor, kernel_size: int = 5, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (sigma defaults as in torchvision); a kernel wider than
    the map pads by repeating the edge instead (reflection needs the map to be wider than the pad)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if kernel_size == 1:
        return m
    sigma = sigma or 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel_size, dtype=m.dtype, device=m.device) - kernel_size // 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c, r = m.shape[1], kernel_size // 2
    pad_w, pad_h = ("reflect" if r < size else "replicate" for size in (m.shape[-1], m.shape[-2]))
    out = F.conv2d(F.pad(m, (r, r, 0, 0), mode=pad_w), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode=pad_h), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def threshold(m: torch.Tensor, tau: float) -> torch.Tensor:
    """Binary mask of m > tau."""
    return (m > tau).to(m.dtype)


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a binary mask by `pixels` (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


def union(*masks: torch.Tensor) -> torch.Tensor:
    return torch.stack(torch.broadcast_tensors(*masks)).amax(0)


def resize(mask: torch.Tensor, size: tuple[int, int], binary: bool = True) -> torch.Tensor:
    """Between the pixel and the latent grid. Down: a latent cell is in a binary mask if any of its
    pixels is (no edit is lost); up: nearest. `binary=False` averages (down) or interpolates
    bilinearly (up)."""
    h, w = mask.shape[-2:]
    if (h, w) == tuple(size):
        return mask
    if size[0] < h:
        if h % size[0] or w % size[1]:
            raise ValueError(f"cannot reduce {h}x{w} to {size[0]}x{size[1]} by an integer factor")
        k = (h // size[0], w // size[1])
        return F.max_pool2d(mask, k) if binary else F.avg_pool2d(mask, k)
    return F.interpolate(mask, size=size, mode="nearest" if binary else "bilinear",
                         **({} if binary else {"align_corners": False}))


def blend(x: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mask * x + (1 - mask) * source: keep the source outside the mask (DiffEdit decoding; the
    pixel-guidance paper's Eq. 10-11)."""
    return mask * x + (1 - mask) * source

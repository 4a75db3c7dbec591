"""Edit masks: contrasting noise predictions under two conditions (DiffEdit; ITO paper Eq. 7;
MCDM paper supp. §1.3) and the mask operations methods compose them from. Masks are float
tensors (B, 1, H, W) with values in [0, 1]; binary masks hold only 0 and 1."""

from __future__ import annotations


import torch
import torch.nn.functional as F


def noise_difference(eps_a: torch.Tensor, eps_b: torch.Tensor, samples: int = 1) -> torch.Tensor:
    """|eps_a - eps_b| averaged over channels and over `samples` consecutive batch entries (the n
    seeds of Eq. 7): (samples * B, C, h, w) -> (B, 1, h, w)."""
    d = (eps_a - eps_b).abs().mean(dim=1, keepdim=True)
    if d.shape[0] % samples:
        raise ValueError(f"batch {d.shape[0]} is not a multiple of samples={samples}")
    return d.reshape(-1, samples, *d.shape[1:]).mean(dim=1)


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
    """Separable Gaussian blur with reflect padding (sigma defaults as in torchvision)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if kernel_size == 1:
        return m
    sigma = sigma or 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel_size, dtype=m.dtype, device=m.device) - kernel_size // 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c, r = m.shape[1], kernel_size // 2
    out = F.conv2d(F.pad(m, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


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




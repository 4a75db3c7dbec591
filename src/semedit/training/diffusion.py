"""The denoising objective shared by the U-Net and ControlNet recipes: the forward process and an
epsilon loss with min-SNR weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MIN_SNR_GAMMA = 5.0  # min-SNR loss weighting (Hang et al. 2023): faster convergence from scratch
# The face: about 12% of a portrait's pixels, 2% for eyes, brows and mouth together, so a plain MSE spends
# most of its gradient on hair, clothes and background. `face_loss_weight` lambda weights each latent
# pixel by 1 + lambda * (its fraction of these classes) (0 = plain MSE, the from-scratch recipe).
FACE_LOSS_CLASSES = ("skin", "eyes", "brows", "mouth", "glasses", "beard", "tears", "nose")


def noised(x0: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator):
    """(x_t, noise, t) for random timesteps: the forward process q(x_t | x_0)."""
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    t = torch.randint(0, len(alphas_cumprod), (len(x0),), generator=g).to(x0.device)
    a = alphas_cumprod.to(x0.device)[t][:, None, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, noise, t


def face_loss_weights(seg: np.ndarray, latent_size: int, face_loss_weight: float) -> torch.Tensor:
    """(n, 1, h, w) per-latent-pixel weights 1 + lambda * (fraction of the pixel's image block in
    FACE_LOSS_CLASSES), from segmentation maps (n, H, W)."""
    from ..world.render import SEG_CLASSES

    face = np.isin(seg, [SEG_CLASSES.index(c) for c in FACE_LOSS_CLASSES])
    fraction = F.adaptive_avg_pool2d(torch.from_numpy(face).float()[:, None], latent_size)
    return 1 + face_loss_weight * fraction


def diffusion_loss(pred: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                   pixel_weights: torch.Tensor | None = None):
    """Epsilon MSE with min-SNR weights min(SNR, gamma) / SNR; with `pixel_weights` (n, 1, h, w) each
    image's MSE is their weighted mean over latent pixels (so the weights move the gradient within an
    image, not the loss scale)."""
    a = alphas_cumprod.to(t.device)[t]
    snr = a / (1 - a)
    w = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
    mse = F.mse_loss(pred, noise, reduction="none").mean(dim=1, keepdim=True)
    if pixel_weights is None:
        per_image = mse.mean(dim=(1, 2, 3))
    else:
        pixel_weights = pixel_weights.to(mse.device)
        per_image = (mse * pixel_weights).sum(dim=(1, 2, 3)) / pixel_weights.sum(dim=(1, 2, 3))
    return (per_image * w).mean()

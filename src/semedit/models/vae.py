"""The VAE's two directions on uint8 images: scaled latents (what the U-Net sees) and round trips."""

from __future__ import annotations

import numpy as np
import torch

from .images import to_tensor, to_uint8


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, batch: int = 250) -> torch.Tensor:
    """Scaled latents (posterior means) of uint8 NxHxWx3 images, `batch` at a time on the VAE's
    device and dtype; returned there."""
    dev, dtype = vae.device, vae.dtype
    return torch.cat([vae.encode(to_tensor(images[i:i + batch]).to(dev, dtype)).latent_dist.mode()
                      * vae.config.scaling_factor for i in range(0, len(images), batch)])


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor) -> np.ndarray:
    """uint8 NxHxWx3 images of scaled latents."""
    return to_uint8(vae.decode(z / vae.config.scaling_factor).sample)


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """Encode (posterior mode) and decode uint8 images; returns uint8 reconstructions."""
    vae.eval()
    dev, dtype = vae.device, vae.dtype
    return np.concatenate([to_uint8(vae.decode(vae.encode(to_tensor(images[i:i + batch]).to(dev, dtype))
                                               .latent_dist.mode()).sample) for i in range(0, len(images), batch)])

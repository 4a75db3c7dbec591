"""Caches derived from model weights: a cache is named by a hash of the weights it came from, so a
retrained part gets fresh ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def weights_tag(folder: Path) -> str:
    """A short hash of a model folder's safetensors."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def latents_path(cache_dir, name: str, vae_dir: Path) -> Path:
    """Where the latents of render cache `name` live, keyed by the VAE weights."""
    return Path(cache_dir) / "latents" / f"{name}_{weights_tag(vae_dir)}.safetensors"


def latents_cache(cache_dir, name: str, images: np.ndarray, vae_dir: Path, device="cpu") -> torch.Tensor:
    """The scaled latents of render cache `name` (on the CPU): read from `latents_path`, or encoded
    once by the VAE in `vae_dir` on `device` (the training device) and written there."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    from ..models.vae import encode_latents

    path = latents_path(cache_dir, name, vae_dir)
    if path.exists():
        z = load_file(path)["latents"]
        if len(z) == len(images):
            return z
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32).to(device).eval()
    z = encode_latents(vae, images).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": z.contiguous()}, path)
    return z

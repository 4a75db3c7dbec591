"""Gradient updates of latents (inference-time optimisation: ITO paper Eq. 3-6; classifier
guidance: the pixel-guidance paper's Eq. 5), with autograd through whatever `loss_fn` calls,
the U-Net included."""

from __future__ import annotations

from typing import Callable

import torch


def latent_gradient(x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d loss_fn(x) / d x, with gradients enabled even inside a no_grad caller."""
    with torch.enable_grad():
        v = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(v), v)
    return grad


def optimise_latents(x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], steps: int, lr: float,
                     optimizer: str = "adam") -> torch.Tensor:
    """`steps` optimiser steps on x against loss_fn (the ITO paper uses Adam, lr 0.1, §4), returning new
    latents; the input tensor is left as it is."""
    if steps <= 0:
        return x
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    with torch.enable_grad():
        v = x.detach().clone().requires_grad_(True)
        opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([v], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(v).backward()
            opt.step()
    return v.detach()


def masked_squared_error(y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """|| weight * (y - x) ||_2^2, the squared L2 norm (a sum, not a mean) of the weighted difference;
    `weight` (e.g. a (B, 1, h, w) mask) broadcasts over the channels. Where the weight is zero the
    gradient is exactly zero (ITO paper Eq. 3-4: reconstruction towards x restricted by a mask)."""
    return ((weight * (y - x)) ** 2).sum()


def cosine_distance(y: torch.Tensor, g: torch.Tensor, over: str = "latent") -> torch.Tensor:
    """1 - y.g / (|y| |g|) (ITO paper Eq. 5, the guidance loss towards a guidance latent), summed over
    the batch. `over="latent"`: one cosine over each batch entry's whole flattened tensor;
    `"pixel"`: one cosine along the channels at every spatial position, summed over positions (its
    gradient is then of the size of a squared error's, so the two can be balanced by weights)."""
    if over == "latent":
        return (1 - torch.nn.functional.cosine_similarity(y.flatten(1), g.flatten(1), dim=1, eps=1e-12)).sum()
    if over == "pixel":
        return (1 - torch.nn.functional.cosine_similarity(y, g, dim=1, eps=1e-12)).sum()
    raise ValueError(f"over must be 'latent' or 'pixel', got {over!r}")

"""Pixel classifiers on U-Net decoder features (DatasetDDPM; the pixel-guidance paper §3.2, supp. A.1).

`g_t`: one MLP per guidance timestep t, reading the features of x_t at t; its cross-entropy gradient
guides the sampling (Eq. 8-9). `g_multi`: an ensemble of MLPs reading the features of the image at
several timesteps, concatenated; it estimates the segmentation map of an input (Fig. 2 b). Both
are plain `ModelMixin`s stored with the family (`pixel-classifiers/`, fp16 safetensors).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ...models.backbone import load_family_part

FOLDER = "pixel-classifiers"  # inside a model family's folder


def pixel_mlp(features: int, hidden: tuple[int, ...], classes: int) -> nn.Sequential:
    """DatasetDDPM's pixel classifier: Linear-ReLU-BatchNorm per hidden layer, then a linear read-out."""
    layers, width = [], features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.BatchNorm1d(h)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, classes))


class PixelClassifiers(ModelMixin, ConfigMixin):
    """Maps per-pixel features (N x D) to class logits (N x classes)."""

    @register_to_config
    def __init__(self, classes: tuple[str, ...], blocks: tuple[int, ...], feature_dim: int,
                 timesteps: tuple[int, ...], multi_timesteps: tuple[int, ...], ensemble: int = 1,
                 hidden: tuple[int, ...] = (128, 32), prompt: str = "", image_size: int = 64):
        super().__init__()
        n = len(classes)
        self.per_timestep = nn.ModuleList([pixel_mlp(feature_dim, hidden, n) for _ in timesteps])
        self.multi = nn.ModuleList([pixel_mlp(feature_dim * len(multi_timesteps), hidden, n)
                                    for _ in range(ensemble)])

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)

    def nearest(self, t: int) -> int:
        """Index of the classifier trained at the timestep nearest t."""
        ts = self.config.timesteps
        return min(range(len(ts)), key=lambda i: (abs(ts[i] - int(t)), ts[i]))

    def g_t(self, t: int, features: torch.Tensor) -> torch.Tensor:
        return self.per_timestep[self.nearest(t)](features)

    def g_multi(self, features: torch.Tensor) -> torch.Tensor:
        """Log of the ensemble's mean class probability."""
        probs = torch.stack([m(features).softmax(-1) for m in self.multi]).mean(0)
        return probs.clamp_min(1e-12).log()


def load_pixel_classifiers(folder: str | Path, device: str | torch.device = "cpu") -> PixelClassifiers:
    return load_family_part(PixelClassifiers, folder, "pixel classifiers", "semedit train pixel-classifiers", device)

"""What every method takes and returns, and the registry that maps names to methods."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class EditRequest:
    """An edit: the input image (uint8 HxWx3) and what to change.

    `mask` (HxW, nonzero = may change) is optional for methods that estimate their own;
    `controls` / `source_controls` map ControlNet names to target / original layout maps
    (uint8 HxWx3 drawings or HxW scribbles); `edited_seg` is an edited segmentation map.
    """
    image: np.ndarray
    target_prompt: str
    source_prompt: str = ""
    mask: np.ndarray | None = None
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    source_controls: dict[str, np.ndarray] = field(default_factory=dict)
    edited_seg: np.ndarray | None = None

    def validate(self, size: int, controlnets=()) -> None:
        """Clear errors for bad input, before any model runs."""
        img = np.asarray(self.image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be uint8 HxWx3, got {img.dtype} {img.shape}")
        if img.shape[:2] != (size, size):
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}; the model needs {size}x{size}")
        if not isinstance(self.target_prompt, str) or not isinstance(self.source_prompt, str):
            raise ValueError("prompts must be strings")
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != (size, size):
                raise ValueError(f"mask is {m.shape}; it must be {size}x{size} like the image")
            if not (m > 0).any():
                raise ValueError("mask is empty: nothing may change")
        for kind, maps in (("controls", self.controls), ("source_controls", self.source_controls)):
            for name, m in maps.items():
                if name not in controlnets:
                    raise ValueError(f"unknown condition type {name!r} in {kind}; this model has: "
                                     f"{', '.join(controlnets) or 'no ControlNets'}")
                if np.asarray(m).shape[:2] != (size, size):
                    raise ValueError(f"{kind}[{name!r}] is {np.asarray(m).shape}; it must be {size}x{size}")


@dataclass
class EditResult:
    image: np.ndarray  # uint8 HxWx3
    mask: np.ndarray | None  # float HxW in [0, 1]: where the method allowed change
    intermediates: dict[str, object]  # named pictures and tensors (inverted latents, guidance image, ...)
    provenance: dict  # method, config, seed, model
    unet_evaluations: int = 0


@dataclass
class Method:
    name: str
    edit: Callable  # edit(backbone, request, config, seed) -> EditResult
    config: type


REGISTRY: dict[str, Method] = {}


def register(name: str, config: type):
    def deco(fn):
        REGISTRY[name] = Method(name, fn, config)
        return fn
    return deco


def provenance(method: str, config, seed: int, backbone) -> dict:
    return {"method": method, "config": dataclasses.asdict(config), "seed": seed, "model": backbone.name}

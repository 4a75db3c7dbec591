"""Image arrays and model tensors: uint8 pictures <-> float tensors, as every part of the family reads them."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float Nx3xHxW in [-1, 1]."""
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float Nx3xHxW in [-1, 1] -> uint8 NxHxWx3."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def control_tensor(maps: np.ndarray) -> torch.Tensor:
    """uint8 layout maps (NxHxWx3 drawings or NxHxW scribbles) -> float Nx3xHxW in [0, 1], the
    ControlNet input (diffusers' ControlNet pipelines scale maps the same way)."""
    x = torch.from_numpy(np.array(maps)).float() / 255.0  # a copy: cache arrays are read-only memmaps
    return x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)

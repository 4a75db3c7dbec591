"""Writing results: PNGs that carry their provenance, a JSON sidecar, the mask and intermediates. Nothing
is overwritten unless asked, and a save writes all of its files or none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..files import check_new_files, write_together
from ..methods import EditResult

PROVENANCE_KEY = "semedit"  # the PNG text chunk holding a result's provenance


def check_png_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path} must end in .png")
    return path


def write_png(path, image: np.ndarray, provenance: dict | None = None) -> None:
    """A uint8 picture as PNG (to a path or a file object), with `provenance` as JSON in its text chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    meta = None
    if provenance is not None:
        meta = PngInfo()
        meta.add_text(PROVENANCE_KEY, json.dumps(provenance))
    Image.fromarray(np.asarray(image)).save(path, format="PNG", pnginfo=meta)


def palette_for(classes: int) -> np.ndarray:
    """Colours of `classes` class ids: the world's class colours, or fixed distinct ones for more classes."""
    from ..world import SEG_PALETTE

    if classes <= len(SEG_PALETTE):
        return SEG_PALETTE
    return np.random.default_rng(0).integers(0, 256, (classes, 3), dtype=np.uint8)


def picture_of(value) -> np.ndarray | None:
    """uint8 RGB pictures as they are, segmentation maps (HxW integer class ids, not uint8) in class colours,
    [0, 1] float/bool HxW arrays in grey; None for anything else."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3:
        return value
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind in "iu" and value.dtype != np.uint8:
        return palette_for(int(value.max()) + 1)[value]
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype != np.uint8:
        return (np.clip(value.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return None


def _tensors(pictures: dict) -> dict:
    """The tensors among the intermediates (dicts of tensors flattened as name.key), each its own copy."""
    import torch

    out = {}
    for name, value in pictures.items():
        if isinstance(value, torch.Tensor):
            out[name] = value.detach().float().cpu().clone().contiguous()
        elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            out.update({f"{name}.{k}": v.detach().float().cpu().clone().contiguous() for k, v in value.items()})
    return out


def result_paths(path, intermediates: dict | None = None) -> list[Path]:
    """Every file `save_result` writes for an output path (to check them before running)."""
    path = Path(path)
    out = [path, path.with_suffix(".json")]
    if intermediates is not None:
        out += [path.with_name(f"{path.stem}.{k}.png") for k, v in intermediates.items() if picture_of(v) is not None]
        out.append(path.with_name(f"{path.stem}.intermediates.safetensors"))
    return out


def save_result(result: EditResult, path, save_intermediates: bool = False, overwrite: bool = False) -> list[Path]:
    """Write the edited image (PNG, provenance in its `semedit` text chunk), a JSON sidecar and, if
    asked, the mask and every intermediate (pictures as PNG, tensors in one safetensors file): all of
    them or, if anything fails, none."""
    from safetensors.torch import save_file

    path = check_png_path(path)
    pictures = dict(result.intermediates)
    if result.mask is not None:
        pictures["mask"] = np.asarray(result.mask, dtype=np.float32)
    check_new_files(result_paths(path, pictures if save_intermediates else None), overwrite)
    writes = [(path, lambda p: write_png(p, result.image, result.provenance))]
    if save_intermediates:
        for name, value in pictures.items():
            if (pic := picture_of(value)) is not None:
                writes.append((path.with_name(f"{path.stem}.{name}.png"), lambda p, pic=pic: write_png(p, pic)))
        if tensors := _tensors(pictures):
            writes.append((path.with_name(f"{path.stem}.intermediates.safetensors"),
                           lambda p: save_file(tensors, str(p))))
    sidecar = {**result.provenance, "files": [str(p) for p, _ in writes]}
    writes.append((path.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(sidecar, indent=2))))
    return write_together(writes)

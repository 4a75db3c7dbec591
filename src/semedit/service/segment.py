"""Segmentation maps for a user: estimated by the pixel classifiers (g_multi), written as a palette PNG
of class ids (the file `semedit edit pixelguide --seg` reads back once edited) and a coloured overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import check_new_files, write_together
from ..methods.pixelguide import PixelGuideConfig, classifiers_for, estimate_segmentation
from ..models.backbone import TOON64
from .backbones import get_backbone
from .inputs import read_picture
from .outputs import check_png_path, palette_for, write_png


def segmentation_paths(path) -> list[Path]:
    path = check_png_path(path)
    return [path, path.with_name(f"{path.stem}.overlay.png")]


def segment_picture(picture, model: str = TOON64, classifiers: str | None = None,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(image, its map of class ids, the class names) by g_multi."""
    from ..engine.conditioning import encode_image

    backbone = get_backbone(model)
    image = read_picture(picture, backbone.image_size, "the image")
    nets = classifiers_for(backbone, PixelGuideConfig(classifiers=classifiers))
    seg = estimate_segmentation(backbone, nets, encode_image(backbone, image), seed)
    return image, seg, tuple(nets.config.classes)


def save_segmentation(path, image: np.ndarray, seg: np.ndarray, classes, overwrite: bool = False) -> list[Path]:
    """The map as a palette PNG (pixel values = class ids) and the overlay next to it: both or none."""
    from PIL import Image

    paths = segmentation_paths(path)
    check_new_files(paths, overwrite)
    palette = palette_for(len(classes))

    def write_map(p):
        img = Image.fromarray(seg.astype(np.uint8), mode="P")
        img.putpalette(palette.flatten().tolist())
        img.save(p, format="PNG")

    overlay = (0.5 * image + 0.5 * palette[seg]).round().astype(np.uint8)
    return write_together([(paths[0], write_map), (paths[1], lambda p: write_png(p, overlay))])

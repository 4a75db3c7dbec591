"""`semedit segment`: the segmentation map of an image by the pixel classifiers."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from .common import model_option, output_option, overwrite_option, user_errors


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option
@model_option
@click.option("--classifiers", default=None, help="Folder of pixel classifiers (default: the model family's).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the noise (Eq. 6).")
@overwrite_option
def segment(image, output, model, classifiers, seed, overwrite):
    """Estimate IMAGE's segmentation map (pixel classifiers on the U-Net's features, g_multi) and write it as a
    palette PNG of class ids, plus OUTPUT.overlay.png. Edit the map and give it to
    `semedit edit pixelguide IMAGE --seg EDITED.png --source-seg OUTPUT`.
    """
    from ..service import check_new_files, save_segmentation, segment_picture, segmentation_paths

    with user_errors():
        check_new_files(segmentation_paths(output), overwrite)
        picture, seg, classes = segment_picture(image, model, classifiers, seed)
        files = save_segmentation(output, picture, seg, classes, overwrite)
    found = ", ".join(f"{classes[c]} {n}" for c, n in zip(*np.unique(seg, return_counts=True)))
    click.echo(f"wrote {', '.join(map(str, files))} (pixels per class: {found})")

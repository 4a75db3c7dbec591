"""`semedit deltaedit`: the DeltaEdit method's own precomputation (its edits run with `semedit edit deltaedit`)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import user_errors


@click.group()
def deltaedit():
    """DeltaEdit's relevance matrix R_s (§3.2)."""


@deltaedit.command()
@click.option("--style-generator", "folder", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="The style generator (and where R_s is saved; default: toon-64's style-generator/).")
@click.option("--images", type=click.IntRange(2), default=32, show_default=True,
              help="World renders (inverted) each channel is moved on.")
@click.option("--alpha", type=click.FloatRange(0, min_open=True), default=5.0, show_default=True,
              help="Each channel is moved by -alpha and +alpha of its standard deviation (StyleCLIP: 5).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Picks the renders.")
@click.option("--overwrite", is_flag=True, help="Replace an existing R_s.")
def relevance(folder, images, alpha, seed, overwrite):
    """Compute R_s, StyleCLIP's global-direction recipe: for every channel of S, the mean unit direction in which
    moving it moves the CLIP image embedding; saved as relevance.safetensors beside the generator."""
    import time

    import numpy as np
    from tqdm import tqdm

    from ..methods.deltaedit.generator import STYLE_FOLDER, load_style_generator
    from ..methods.deltaedit.mapper import RELEVANCE_FILE
    from ..methods.deltaedit.relevance import relevance_matrix, save_relevance
    from ..models.backbone import load_backbone
    from ..models.toon64 import TOON64_DIR
    from ..world import record_seed, render, sample_record

    folder = folder or TOON64_DIR / STYLE_FOLDER
    with user_errors():
        if (folder / RELEVANCE_FILE).exists() and not overwrite:
            raise ValueError(f"{folder / RELEVANCE_FILE} exists; give --overwrite to replace it")
        generator, encoder = load_style_generator(folder)
        clip = load_backbone("toon-64").clip
        renders = np.stack([render(sample_record(record_seed(29_000_000 + seed, i))).image for i in range(images)])
        t0 = time.perf_counter()
        with tqdm(total=generator.style_dim, desc="R_s", unit="channel") as bar:
            rs = relevance_matrix(generator, encoder, clip, renders, alpha, progress=lambda i, n: bar.update())
        path = save_relevance(rs, folder, {"images": images, "alpha": alpha, "seed": seed,
                                           "seconds": round(time.perf_counter() - t0, 1)})
    click.echo(f"R_s ({rs.shape[0]} channels x {rs.shape[1]}) saved to {path}")

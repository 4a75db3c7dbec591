"""`semedit deltaedit`: the DeltaEdit method's own precomputation (its edits run with `semedit edit deltaedit`)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import check_output, user_errors


@click.group()
def deltaedit():
    """DeltaEdit's relevance matrix R_s (§3.2), attribute interpolation (§5.2.1) and style mixing (§5.3.1)."""


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


def _settings(style_generator, mapper, diffusion, variant, threshold, steps):
    from ..methods import make_config

    given = {"style_generator": style_generator, "trained_model": mapper, "diffusion_model": diffusion,
             "variant": variant, "threshold": threshold, "steps": steps}
    return make_config("deltaedit", **{k: str(v) if isinstance(v, Path) else v for k, v in given.items()
                                       if v is not None})


def _part_options(f):
    for opt in reversed([
        click.option("--variant", type=click.Choice(["g", "d"]), default=None, help="G (default) or D."),
        click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="beta of R_s (default 0.03)."),
        click.option("--steps", type=click.IntRange(1, 1000), default=None, help="D's DDIM steps (default 100)."),
        click.option("--style-generator", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None),
        click.option("--mapper", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None),
        click.option("--diffusion", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True),
        click.option("--overwrite", is_flag=True, help="Replace an existing output."),
    ]):
        f = opt(f)
    return f


@deltaedit.command()
@click.argument("image", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-a", "--target-a", required=True, help="The first edit's target prompt (omega = 1).")
@click.option("-b", "--target-b", required=True, help="The second edit's target prompt (omega = 0).")
@click.option("-s", "--source", default="", help="The source prompt of both edits (default: none).")
@click.option("--frames", type=click.IntRange(2, 21), default=6, show_default=True,
              help="Images from omega = 1 to 0 (§5.2.1: 0.2 apart).")
@_part_options
def interpolate(image, target_a, target_b, source, frames, variant, threshold, steps, style_generator, mapper,
                diffusion, output, overwrite):
    """Attribute interpolation (§5.2.1, Fig. 10): omega * ŝ_a + (1 - omega) * ŝ_b between two edits of IMAGE,
    written as one strip."""
    import numpy as np

    from ..methods.deltaedit import interpolate as interpolate_edits
    from ..service import get_backbone, read_picture, write_png

    check_output(output, overwrite)
    with user_errors():
        config = _settings(style_generator, mapper, diffusion, variant, threshold, steps)
        backbone = get_backbone("toon-64")
        picture = read_picture(image, backbone.image_size, "the image")
        strip = interpolate_edits(backbone, picture, (source, target_a), (source, target_b),
                                  np.linspace(1, 0, frames), config)
        write_png(output, np.concatenate(list(strip), 1), {"method": "deltaedit interpolation", "a": target_a,
                                                           "b": target_b, "source": source, "frames": frames})
    click.echo(f"saved {output}")


@deltaedit.command()
@click.argument("content", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("style", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--level", "levels", type=click.Choice(["coarse", "medium", "fine"]), multiple=True,
              default=("coarse",), show_default=True, help="Levels of S taken from STYLE; repeatable.")
@_part_options
def mix(content, style, levels, variant, threshold, steps, style_generator, mapper, diffusion, output, overwrite):
    """Style mixing (§5.3.1, Fig. 15): CONTENT's styles with the given levels taken from STYLE."""
    from ..methods.deltaedit import style_mix
    from ..service import get_backbone, read_picture, write_png

    check_output(output, overwrite)
    with user_errors():
        config = _settings(style_generator, mapper, diffusion, variant, threshold, steps)
        backbone = get_backbone("toon-64")
        pictures = [read_picture(p, backbone.image_size, what) for p, what in ((content, "the content image"),
                                                                               (style, "the style image"))]
        write_png(output, style_mix(backbone, *pictures, levels, config),
                  {"method": "deltaedit style mixing", "levels": list(levels)})
    click.echo(f"saved {output}")

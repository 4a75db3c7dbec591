"""`semedit world`: the procedural toon world from the command line."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .common import check_output, output_option, overwrite_option, user_errors


def _changes(items) -> dict:
    from ..service import parse_changes

    with user_errors():
        return parse_changes(items)


@click.group()
def world():
    """The procedural toon world: sample, export, attribute sheets, ground-truth edits, diptychs."""


_size = click.option("--size", type=click.Choice(["64", "128", "256"]), default="64", show_default=True,
                     help="Output resolution in pixels (square; diptychs are twice as wide).")
_zoom = click.option("--zoom", type=click.IntRange(1, 8), default=3, show_default=True,
                     help="Nearest-neighbour magnification of the picture.")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@_size
@_zoom
@output_option
@overwrite_option
def sample(count, seed, size, zoom, output, overwrite):
    """Render a grid of portraits with their segmentation, pose and scribble maps."""
    from ..world import record_seed, render, sample_record
    from ..world.sheets import sample_sheet

    check_output(output, overwrite)
    renders = [render(sample_record(record_seed(seed, i)), int(size)) for i in range(count)]
    sample_sheet(renders, zoom).save(output)
    click.echo(f"wrote {output} ({count} samples, seed {seed}, {size}px)")


@world.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--count", type=click.IntRange(1), required=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@_size
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: CPU count).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty folder.")
def export(folder, count, seed, size, workers, overwrite):
    """Render COUNT samples to FOLDER: images/, seg/, pose/, scribble/ PNGs and metadata.jsonl."""
    from ..world import export_dataset

    t0 = time.perf_counter()
    try:
        export_dataset(folder, count, seed=seed, size=int(size), workers=workers, overwrite=overwrite)
    except (FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    dt = time.perf_counter() - t0
    click.echo(f"wrote {count} samples to {folder} in {dt:.1f} s ({count / dt:.0f} samples/s)")


@world.command()
@click.option("--seed", type=click.IntRange(0), default=3, show_default=True, help="Seed of the base record.")
@_size
@click.option("--zoom", type=click.IntRange(1, 8), default=2, show_default=True, help="Magnification.")
@output_option
@overwrite_option
def sheet(seed, size, zoom, output, overwrite):
    """One row per attribute, one column per value, all else from one base record."""
    from ..world import render, sample_record
    from ..world.sheets import attribute_sheet

    check_output(output, overwrite)
    base = sample_record(seed).replace(head_x=0.0, head_y=0.0, head_scale=1.0, head_tilt=0.0)
    attribute_sheet(base, lambda r: render(r, int(size)), zoom).save(output)
    click.echo(f"wrote {output}")


@world.command()
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the source record.")
@click.option("--set", "changes", multiple=True, required=True, metavar="ATTRIBUTE=VALUE",
              help="An attribute to change (repeatable), e.g. --set expression=laughing.")
@_size
@_zoom
@output_option
@overwrite_option
def edit(seed, changes, size, zoom, output, overwrite):
    """A ground-truth edit: source, target, true edit region and changed pixels."""
    from ..world import ground_truth_edit, sample_record
    from ..world.sheets import edit_sheet

    parsed = _changes(changes)
    check_output(output, overwrite)
    try:
        e = ground_truth_edit(sample_record(seed), int(size), **parsed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    edit_sheet([e], zoom).save(output)
    click.echo(f"wrote {output}: changed {', '.join(e.changed)}; region covers {int(e.region.sum())} pixels")


@world.command(name="render")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the record.")
@click.option("--set", "changes", multiple=True, metavar="ATTRIBUTE=VALUE",
              help="An attribute to set (repeatable), e.g. --set hair_colour=red.")
@_size
@output_option
@overwrite_option
def render_one(seed, changes, size, output, overwrite):
    """One toon image that carries its record, ready for `semedit edit` (source prompt and maps derived)."""
    from ..world import describe, sample_record, save_toon_png

    parsed = _changes(changes)
    check_output(output, overwrite)
    try:
        rec = sample_record(seed).replace(**parsed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    save_toon_png(output, rec, int(size))
    click.echo(f"wrote {output}: {describe(rec)}")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 32), default=4, show_default=True, help="Number of pairs.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@click.option("--kind", type=click.Choice(["costume", "expression"]), default=None,
              help="Edit direction (default: either).")
@_zoom
@output_option
@overwrite_option
def pairs(count, seed, kind, zoom, output, overwrite):
    """Diptychs: one identity before and after a paired edit (the MCDM paper's pair canvas)."""
    from ..world import diptych, record_seed, sample_pair
    from ..world.sheets import diptych_sheet

    check_output(output, overwrite)
    dips = []
    for i in range(count):
        source, target, k = sample_pair(record_seed(seed, i), kind)
        dips.append(diptych(source, target, template=k))
    diptych_sheet(dips, zoom).save(output)
    for d in dips:
        click.echo(f"{d.caption} | {d.left_caption} | {d.right_caption}")
    click.echo(f"wrote {output}")

"""The `semedit` command line."""

from __future__ import annotations

import time
from pathlib import Path

import click

from . import __version__


def _check_output(path: Path, overwrite: bool) -> Path:
    """Refuse to overwrite an existing file unless asked; create the parent folder."""
    if path.suffix.lower() != ".png":
        raise click.BadParameter(f"{path} must end in .png", param_hint="'-o' / '--output'")
    if path.exists() and not overwrite:
        raise click.ClickException(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _parse_changes(items: tuple[str, ...]) -> dict:
    from .world import CATEGORICAL, POSE_RANGES

    changes = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not ATTRIBUTE=VALUE", param_hint="'--set'")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in POSE_RANGES:
            try:
                changes[key] = float(value)
            except ValueError:
                raise click.BadParameter(f"{key} needs a number, got {value!r}", param_hint="'--set'") from None
        elif key == "scene_seed":
            if not value.isdigit():
                raise click.BadParameter(f"scene_seed needs a non-negative integer, got {value!r}",
                                         param_hint="'--set'")
            changes[key] = int(value)
        elif key in CATEGORICAL:
            changes[key] = value
        else:
            known = ", ".join([*CATEGORICAL, *POSE_RANGES, "scene_seed"])
            raise click.BadParameter(f"unknown attribute {key!r}; known: {known}", param_hint="'--set'")
    return changes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semedit")
def main():
    """semedit: feature-preserving semantic image editing with diffusion models.

    Today it holds the toon world (`semedit world ...`): the procedural cartoon portraits that
    the embedded toon-64 models are trained on and that every edit is judged on.
    """


@main.group()
def world():
    """The procedural toon world: sample, export, attribute sheets, ground-truth edits, diptychs."""


_size = click.option("--size", type=click.Choice(["64", "128", "256"]), default="64", show_default=True,
                     help="Output resolution in pixels (square; diptychs are twice as wide).")
_zoom = click.option("--zoom", type=click.IntRange(1, 8), default=3, show_default=True,
                     help="Nearest-neighbour magnification of the picture.")
_overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
_output = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                       help="PNG file to write.")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@_size
@_zoom
@_output
@_overwrite
def sample(count, seed, size, zoom, output, overwrite):
    """Render a grid of portraits with their segmentation, pose and scribble maps."""
    from .world import record_seed, render, sample_record
    from .world.sheets import sample_sheet

    _check_output(output, overwrite)
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
    from .world import export_dataset

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
@_output
@_overwrite
def sheet(seed, size, zoom, output, overwrite):
    """One row per attribute, one column per value, all else from one base record."""
    from .world import render, sample_record
    from .world.sheets import attribute_sheet

    _check_output(output, overwrite)
    base = sample_record(seed).replace(head_x=0.0, head_y=0.0, head_scale=1.0, head_tilt=0.0)
    attribute_sheet(base, lambda r: render(r, int(size)), zoom).save(output)
    click.echo(f"wrote {output}")


@world.command()
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the source record.")
@click.option("--set", "changes", multiple=True, required=True, metavar="ATTRIBUTE=VALUE",
              help="An attribute to change (repeatable), e.g. --set expression=laughing.")
@_size
@_zoom
@_output
@_overwrite
def edit(seed, changes, size, zoom, output, overwrite):
    """A ground-truth edit: source, target, true edit region and changed pixels."""
    from .world import ground_truth_edit, sample_record
    from .world.sheets import edit_sheet

    parsed = _parse_changes(changes)
    _check_output(output, overwrite)
    try:
        e = ground_truth_edit(sample_record(seed), int(size), **parsed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    edit_sheet([e], zoom).save(output)
    click.echo(f"wrote {output}: changed {', '.join(e.changed)}; region covers {int(e.region.sum())} pixels")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 32), default=4, show_default=True, help="Number of pairs.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@click.option("--kind", type=click.Choice(["costume", "expression"]), default=None,
              help="Edit direction (default: either).")
@_zoom
@_output
@_overwrite
def pairs(count, seed, kind, zoom, output, overwrite):
    """Diptychs: one identity before and after a paired edit (the MCDM paper's pair canvas)."""
    from .world import diptych, record_seed, sample_pair
    from .world.sheets import diptych_sheet

    _check_output(output, overwrite)
    dips = []
    for i in range(count):
        source, target, k = sample_pair(record_seed(seed, i), kind)
        dips.append(diptych(source, target, template=k))
    diptych_sheet(dips, zoom).save(output)
    for d in dips:
        click.echo(f"{d.caption} | {d.left_caption} | {d.right_caption}")
    click.echo(f"wrote {output}")


if __name__ == "__main__":  # pragma: no cover
    main()

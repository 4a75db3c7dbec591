"""What the command groups share: options, output checks and turning service errors into click errors."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import click


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan (it passes every bound check) and infinities."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return number


overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
output_option = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                             help="PNG file to write.")
model_option = click.option("--model", default="toon-64", show_default=True,
                            help="toon-64, a diffusers SD folder or a hub id.")


def check_output(path: Path, overwrite: bool) -> Path:
    """A PNG path that may be written: refuse to overwrite unless asked; create the parent folder."""
    from ..service import check_new_files, check_png_path

    with user_errors():
        check_png_path(path)
        check_new_files([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def user_errors():
    """Bad input and refused overwrites as a one-line error, not a traceback."""
    from ..models.backbone import BackboneNotFound

    try:
        yield
    except (ValueError, OSError, BackboneNotFound) as e:  # OSError: files that cannot be read or written
        raise click.ClickException(str(e)) from None

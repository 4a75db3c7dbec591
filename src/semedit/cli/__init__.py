"""The `semedit` command line: one module per command group, each a thin shell over `semedit.service`
(editing), `semedit.eval` (the benchmark) and `semedit.training`."""

from __future__ import annotations

import click

from .. import __version__
from .app import app
from .bench import bench
from .deltaedit import deltaedit
from .edit import edit
from .generate import generate
from .mcdm import mcdm
from .segment import segment
from .train import train
from .weights import convert_weights
from .world import world


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semedit")
def main():
    """semedit: feature-preserving semantic image editing with diffusion models.

    Edit an image with a method of the papers (`semedit edit`), judge methods on the toon benchmark
    (`semedit bench`), make toons (`semedit world`) and train the embedded toon-64 family (`semedit train`).
    """


for command in (world, generate, edit, segment, app, bench, convert_weights, train, mcdm, deltaedit):
    main.add_command(command)

__all__ = ["main"]

"""`semedit convert-weights`: the papers' metric networks (LPIPS, FID Inception, ArcFace) from their published
files to the safetensors `semedit bench` loads."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-weights")
@click.argument("kind", type=click.Choice(["lpips", "inception", "arcface"]))
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .safetensors file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def convert_weights(kind, sources, out, overwrite):
    """Turn the published weights of a paper metric network into the safetensors `semedit bench` loads.

    \b
    lpips:     torchvision's alexnet-owt-7be5be79.pth and the lpips package's weights/v0.1/alex.pth
    inception: pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    arcface:   insightface arcface_torch's backbone.pth (any iresnet depth)
    """
    from ..eval.paper_nets import convert_weights as convert

    if out.suffix != ".safetensors":
        raise click.BadParameter("must end in .safetensors", param_hint="'--out'")
    try:
        path = convert(kind, list(sources), out, overwrite)
    except (FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {path} ({kind}); use it with `semedit bench --{kind}-weights {path}`")

"""`semedit app`: start the web app (the one command-line module that imports `semedit.app`)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import model_option, user_errors


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@model_option
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=Path("semedit-data"),
              show_default=True, help="Folder of the history: every edit's request, settings and pictures.")
@click.option("--controlnet", multiple=True, metavar="NAME=FOLDER_OR_HUB_ID",
              help="A ControlNet to load with --model under NAME (repeatable).")
@click.option("--fast", is_flag=True, help="Run the networks compiled, in bfloat16 where the device has it "
              "natively: faster per call; the first edit of each kind compiles (minutes on a CPU); results differ "
              "within bf16's tolerance.")
def app(host, port, model, data, controlnet, fast):
    """Start the web app: make, upload or generate an image, edit it with any method (by text, a painted
    mask, a pose or a scribble), watch the progress, compare and download the results."""
    import uvicorn

    from ..app.server import create_app
    from ..service import get_backbone, parse_named

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the app and its CPU",
                   err=True)
    with user_errors():
        controlnets = parse_named(controlnet, "--controlnet", must_exist=False) or None
        get_backbone(model, controlnets, fast)  # loaded once, before the first edit
        web = create_app(model, data, controlnets, fast=fast)
    click.echo(f"semedit app on http://{'localhost' if host == '127.0.0.1' else host}:{port} (model {model}, "
               f"history in {data}); Ctrl-C stops it")
    uvicorn.run(web, host=host, port=port, log_level="warning")

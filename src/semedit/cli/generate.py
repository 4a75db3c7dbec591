"""`semedit generate`: text-to-image (optionally following a pose drawing or a scribble) on the engine
(`engine.generate`: the same image as diffusers' StableDiffusion(ControlNet)Pipeline with DDIM)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .common import (FiniteFloatRange, check_output, model_option, output_option, overwrite_option,
                     user_errors)


@click.command()
@click.argument("prompt")
@model_option
@click.option("--pose", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An OpenPose-style drawing to follow (ControlNet 'pose').")
@click.option("--scribble", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A scribble map (white lines on black) to follow (ControlNet 'scribble').")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True,
              help="DDIM steps (at most the model's training steps less its offset: 999 for SD-style models).")
@click.option("--cfg", type=FiniteFloatRange(0, 50), default=7.5, show_default=True,
              help="Classifier-free guidance scale.")
@click.option("--negative-prompt", default="", help="Text to steer away from.")
@output_option
@overwrite_option
def generate(prompt, model, pose, scribble, seed, steps, cfg, negative_prompt, output, overwrite):
    """Generate an image from PROMPT (optionally following a pose drawing or a scribble)."""
    from ..engine.ddim import make_schedule
    from ..engine.generate import generate as text_to_image
    from ..models.backbone import image_size_of
    from ..service import get_backbone, prompt_notes, read_picture, write_png

    if pose and scribble:
        raise click.UsageError("give --pose or --scribble, not both")
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    check_output(output, overwrite)
    kind = "pose" if pose else "scribble" if scribble else None
    with user_errors():
        size, notes = image_size_of(model), []
        layouts = {kind: read_picture(pose or scribble, size, f"--{kind}", notes=notes)} if kind else {}
        bb = get_backbone(model)
        if kind and kind not in bb.controlnets:
            raise click.ClickException(f"{model} has no {kind} ControlNet")
        make_schedule(bb.scheduler_config, steps)  # the steps fit the model's schedule
    for note in notes + prompt_notes(bb.tokenizer, {"prompt": prompt, "negative prompt": negative_prompt}):
        click.echo(f"note: {note}", err=True)
    t0 = time.perf_counter()
    image = text_to_image(bb, prompt, negative_prompt, steps, cfg, seed, layouts)
    dt = time.perf_counter() - t0
    write_png(output, image, {"prompt": prompt, "model": model, "seed": seed, "steps": steps, "cfg": cfg,
                              "control": kind, "negative_prompt": negative_prompt})
    click.echo(f"wrote {output} ({size}x{size}, {steps} steps, {dt:.1f} s)")

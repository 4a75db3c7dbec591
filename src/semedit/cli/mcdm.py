"""`semedit mcdm`: the MCDM method's own data (its edits run with `semedit edit mcdm`)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import model_option, user_errors


@click.group()
def mcdm():
    """The MCDM paper's paired data generation (§3.2)."""


@mcdm.command()
@click.option("--edit", "edits", multiple=True, required=True,
              help="An editing direction, costume=TARGET (flower, sheep, santa, royal; from normal) or "
                   "expression=TARGET (angry, shocked, laughing, crying; from neutral). Repeatable.")
@click.option("-n", "--n", type=click.IntRange(1), required=True, help="Pairs per direction.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of the set (DIRECTION/NNNNNN.png and .json); an unfinished set there is continued.")
@model_option
@click.option("--identity-encoder", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Default: the family's identity-encoder/ (`semedit train identity-encoder`).")
@click.option("--no-identity", is_flag=True, help="Without identity embeddings c_id (the paper's Fig. 3 c).")
@click.option("--no-pose", is_flag=True, help="Without the pose ControlNet (the paper's Fig. 3 b).")
@click.option("--sampler", type=click.Choice(["karras", "ddim"]), default="karras", show_default=True,
              help="The stochastic Karras sampler of the paper (supp. §1.1) or deterministic DDIM.")
@click.option("--steps", type=click.IntRange(1), default=20, show_default=True, help="Denoising steps (supp.: 20).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the set.")
def pairs(edits, n, out, model, identity_encoder, no_identity, no_pose, sampler, steps, seed):
    """Generate training pairs [x_A, x_B] for editing directions: one denoising run per pair on a two-portrait
    canvas, with the pose ControlNet and identity embeddings (MCDM §3.2). Runs on several processes with
    `accelerate launch -m semedit.cli mcdm pairs ...`; each pair is seeded by its direction and index, so the set
    does not depend on the number of processes."""
    import torch
    from accelerate import PartialState
    from tqdm import tqdm

    from ..methods.mcdm.model import IDENTITY_FOLDER, load_identity_encoder
    from ..methods.mcdm.pairs import PairConfig, PairDirection, pair_items, write_pairs
    from ..models.backbone import load_backbone

    with user_errors():
        directions = [PairDirection.parse(e) for e in edits]
        config = PairConfig(steps=steps, pose=not no_pose, identity=not no_identity, sampler=sampler)
        # one process per GPU, or (launched with --multi_gpu on a machine without one) per CPU share
        state = PartialState(cpu=not torch.cuda.is_available())
        bb = load_backbone(model, device=state.device)
        encoder = None
        if config.identity:
            folder = identity_encoder or (bb.root / IDENTITY_FOLDER if bb.root is not None else None)
            if folder is None:
                raise ValueError(f"{model} has no identity encoder: give --identity-encoder or --no-identity")
            encoder = load_identity_encoder(folder, bb.device)
        if config.pose and "pose" not in bb.controlnets:
            raise ValueError(f"{model} has no pose ControlNet: give --no-pose")
        share = pair_items(directions, n, state.process_index, state.num_processes)
        with tqdm(total=len(share), desc=f"pairs (process {state.process_index})", unit="pair") as bar:
            made = write_pairs(bb, encoder, directions, n, out, config, seed, state.process_index,
                               state.num_processes, progress=lambda d, j: bar.update())
    click.echo(f"{made} pairs made, {len(share) - made} already there, in {out}")

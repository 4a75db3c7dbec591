"""`semedit train`: the toon-64 family's training commands, thin shells over `semedit.training`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import FiniteFloatRange, user_errors


@click.group()
def train():
    """Train the embedded toon-64 family (resumable; each prints where it saved and what it measured).

    Order: data, tokenizer, clip, vae, then the U-Net, ControlNets and the evaluator. Runs keep
    checkpoints in --run-dir and continue from them unless --fresh.
    """


def _train_options(name):
    """Options shared by the training commands; steps, batch size and lr default to the recipe's TrainConfig."""
    def deco(f):
        for opt in reversed([
            click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
                         show_default=True, help="Render cache (made by `semedit train data`)."),
            click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(f"runs/{name}"),
                         show_default=True, help="Checkpoints, loss log and report."),
            click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Where the final weights go (default: the embedded toon-64 folder)."),
            click.option("--steps", type=click.IntRange(1), default=None, help="Default: the recipe's."),
            click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's."),
            click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
                         help="Default: the recipe's."),
            click.option("--seed", type=click.IntRange(0), default=0, show_default=True),
            click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start again."),
            click.option("--time-budget", type=FiniteFloatRange(min=0, min_open=True), default=None,
                         help="Minutes: shorten --steps (and the schedule) to what fits, at the pace measured "
                              "during warm-up."),
        ]):
            f = opt(f)
        return f
    return deco


def _report(name, report, where):
    click.echo(f"{name}: saved to {where}")
    click.echo(json.dumps(report, indent=2))


@train.command()
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True)
@click.option("-n", "--count", type=click.IntRange(1), default=40000, show_default=True, help="Training samples.")
@click.option("--heldout", type=click.IntRange(1), default=2000, show_default=True, help="Held-out samples.")
@click.option("--pairs", type=click.IntRange(1), default=10000, show_default=True, help="Diptych pairs.")
@click.option("--workers", type=click.IntRange(1, 64), default=None)
def data(cache, count, heldout, pairs, workers):
    """Render the training caches: world samples (seed 1), held-out samples (seed 2), diptychs (seed 3)."""
    from ..training.data import build_caches

    build_caches(cache, count, heldout, pairs, workers)
    click.echo(f"caches ready in {cache}")


@train.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tokenizer folder (default: the embedded toon-64 tokenizer).")
@click.option("--vocab-size", type=click.IntRange(300), default=1024, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
def tokenizer(out, vocab_size, seed):
    """Train the CLIP-format BPE tokenizer on world captions."""
    from ..models.toon64 import TOON64_DIR
    from ..training.clip import train_tokenizer

    out = out or TOON64_DIR / "tokenizer"
    tok = train_tokenizer(out, vocab_size, seed)
    click.echo(f"tokenizer: {len(tok)} tokens, saved to {out}")


@train.command()
@_train_options("vae")
@click.option("--decoder-only", is_flag=True,
              help="Fine-tune the decoder of --init-from (default: the embedded VAE) on its encoder's latents, iris "
                   "pixels weighted by --iris-weight; the encoder, latents and latent scale stay as they are.")
@click.option("--iris-weight", type=FiniteFloatRange(min=0), default=None,
              help="An iris pixel's loss weight is 1 + this. Default: 0 from scratch, 30 with --decoder-only.")
@click.option("--init-from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="With --decoder-only: the VAE whose decoder is fine-tuned (default: the embedded one).")
def vae(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, decoder_only, iris_weight, init_from):
    """Train the VAE (AutoencoderKL 64x64x3 -> 4x16x16); measures held-out PSNR and the latent scale."""
    from ..models.toon64 import TOON64_DIR
    from ..training.vae import DECODER_TRAIN, IRIS_WEIGHT, VAE_TRAIN, finetune_decoder, train_vae

    out = out or TOON64_DIR / "vae"
    if not decoder_only:
        if init_from is not None:
            raise click.UsageError("--init-from goes with --decoder-only")
        report = train_vae(cache, run_dir, out, VAE_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget),
                           resume=not fresh, iris_weight=iris_weight or 0.0)
    else:
        if run_dir == Path("runs/vae"):
            run_dir = Path("runs/vae-decoder")
        report = finetune_decoder(cache, init_from or TOON64_DIR / "vae", run_dir, out,
                                  DECODER_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget),
                                  IRIS_WEIGHT if iris_weight is None else iris_weight, resume=not fresh)
    _report("vae", report, out)


def _init_from_option(what: str):
    return click.option("--init-from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
                        help=f"Start from these {what} weights (e.g. the embedded ones) instead of from scratch "
                             "(a fresh optimizer and schedule).")


@train.command()
@_train_options("clip")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tokenizer folder (default: the embedded one).")
@click.option("--text-encoder/--no-text-encoder", default=True, show_default=True,
              help="Also write the text tower as text_encoder/ (--no-text-encoder keeps the one a trained U-Net uses).")
@click.option("--text-attribute-weight", type=FiniteFloatRange(min=0), default=None,
              help="Weight of a text-side loss that reads every attribute a caption names from the text tower "
                   "(keeps the face words apart for the U-Net; 0 = contrastive only). Default: the recipe's, 1 "
                   "(0 with --freeze-text-tower).")
@click.option("--image-attribute-weight", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Weight of an image-side loss that reads every attribute an image shows from the vision tower "
                   "(makes its features carry the small face parts; 0 = contrastive only).")
@_init_from_option("CLIP")
@click.option("--freeze-text-tower", is_flag=True,
              help="Keep the text tower of --init-from fixed (the U-Net trained on it stays valid); train the "
                   "vision tower and the projections.")
@click.option("--every-value-negatives", is_flag=True,
              help="A hard-negative image meets the captions of every other value of the changed attribute, "
                   "not one random other value.")
def clip(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, tokenizer_dir, text_encoder,
         text_attribute_weight, image_attribute_weight, init_from, freeze_text_tower, every_value_negatives):
    """Train the small CLIP (text + vision towers, contrastive); measures zero-shot accuracy and retrieval."""
    from ..models.toon64 import TOON64_DIR
    from ..training.clip import CLIP_TRAIN, TEXT_ATTRIBUTE_WEIGHT, train_clip

    if text_attribute_weight is None:
        text_attribute_weight = 0.0 if freeze_text_tower else TEXT_ATTRIBUTE_WEIGHT
    out = out or TOON64_DIR
    try:
        report = train_clip(cache, tokenizer_dir or TOON64_DIR / "tokenizer", run_dir, out,
                            CLIP_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget), resume=not fresh,
                            write_text_encoder=text_encoder, text_attribute_weight=text_attribute_weight,
                            image_attribute_weight=image_attribute_weight, init_from=init_from,
                            freeze_text_tower=freeze_text_tower, every_value_negatives=every_value_negatives)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    _report("clip", report, out / "clip")


def _family_option():
    return click.option("--family", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The family folder this part builds on (its VAE, text encoder, U-Net) and, without "
                             "--out, writes into (default: the embedded toon-64).")


def _text_encoder_option():
    return click.option("--text-encoder", "text_encoder_dir", default=None,
                        type=click.Path(file_okay=False, exists=True, path_type=Path),
                        help="Condition on this text encoder: a text_encoder folder or a CLIP folder (its text "
                             "tower; e.g. a `train clip` run's out/clip). Default: the family's.")


@train.command()
@_train_options("unet")
@_init_from_option("U-Net")
@_text_encoder_option()
@_family_option()
@click.option("--face-loss-weight", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Weight the loss of single portraits towards the face: each latent pixel by 1 + this x its "
                   "fraction of skin, eyes, brows, mouth, glasses, beard, tears and nose (0 = plain MSE).")
def unet(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, text_encoder_dir,
         family, face_loss_weight):
    """Train the text-conditional U-Net (caption dropout, diptychs, EMA) on VAE latents."""
    from ..models.backbone import write_family_index
    from ..models.toon64 import TOON64_DIR
    from ..training.unet import UNET_TRAIN, train_unet

    family = family or TOON64_DIR
    out = out or family / "unet"
    report = train_unet(cache, family, run_dir, out,
                        UNET_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget), resume=not fresh,
                        init_from=init_from, text_encoder_dir=text_encoder_dir, face_loss_weight=face_loss_weight)
    write_family_index(family)
    _report("unet", report, out)


@train.command()
@click.argument("kind", type=click.Choice(["pose", "scribble"]))
@_train_options("controlnet")
@_init_from_option("ControlNet")
@_text_encoder_option()
@click.option("--unet", "unet_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The frozen U-Net to steer (default: the family's).")
@_family_option()
def controlnet(kind, cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, text_encoder_dir,
               unet_dir, family):
    """Train a ControlNet for the pose drawing or the scribble map on the frozen U-Net."""
    from ..models.toon64 import TOON64_DIR
    from ..training.controlnet import CONTROLNET_TRAIN, train_controlnet

    family = family or TOON64_DIR
    out = out or family / f"controlnet-{kind}"
    if run_dir == Path("runs/controlnet"):
        run_dir = Path(f"runs/controlnet-{kind}")
    report = train_controlnet(kind, cache, family, run_dir, out,
                              CONTROLNET_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget),
                              resume=not fresh,
                              init_from=init_from, text_encoder_dir=text_encoder_dir, unet_dir=unet_dir)
    _report(f"controlnet-{kind}", report, out)


@train.command()
@_train_options("evaluator")
@_init_from_option("evaluator")
@click.option("--face-branch/--no-face-branch", default=True, show_default=True,
              help="Read expression, eye colour and face shape from an aligned, enlarged face crop (added "
                   "to an --init-from model that has none).")
@click.option("--face-only", is_flag=True, help="Train the face branch alone (the rest stays as it is).")
@click.option("--face-augment", is_flag=True,
              help="Jitter the face crop's pose and mirror half the crops while training (FaceAugment).")
@_family_option()
def evaluator(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, face_branch,
              face_only, face_augment, family):
    """Train the attribute evaluator (the benchmark's judge) on renders and VAE reconstructions."""
    from ..models.evaluator import FACE_ATTRIBUTES
    from ..models.toon64 import TOON64_DIR
    from ..training.evaluator import EVALUATOR_TRAIN, FaceAugment, train_evaluator

    family = family or TOON64_DIR
    out = out or family / "evaluator"
    report = train_evaluator(cache, family / "vae", run_dir, out,
                             EVALUATOR_TRAIN.with_changes(steps, batch_size, lr, seed, time_budget),
                             resume=not fresh, init_from=init_from,
                             face_attributes=FACE_ATTRIBUTES if face_branch else (), face_only=face_only,
                             face_augment=FaceAugment() if face_augment else None)
    _report("evaluator", report, out)


@train.command(name="all")
@click.option("--hours", type=FiniteFloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Wall-clock budget for the whole family; each part's steps are fitted to its share of what is "
                   "left (TrainAllPlan).")
@click.option("--family", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the family goes (default: the embedded toon-64 folder, overwritten).")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Run folders (checkpoints, logs, reports) and the clock, train_all_times.json.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Render cache (default: RUNS/cache).")
@click.option("--fresh", is_flag=True, help="Start every part again and reset the clock.")
def train_all(hours, family, runs_dir, cache, fresh):
    """Train the whole family from scratch, in order, within --hours; stopped and run again, it goes on
    where it was (finished parts are skipped, the others resume from their checkpoints) and keeps counting."""
    from ..models.toon64 import TOON64_DIR
    from ..training.train_all import TrainAllPlan, train_all as run_all

    run_all(family or TOON64_DIR, runs_dir, cache or runs_dir / "cache", TrainAllPlan(hours=hours), fresh,
            echo=click.echo)


def _method_part_options(name: str, default_out: str, seed_note: str):
    """--run-dir, --out, --steps, --seed and --fresh of the commands that train a method's own part."""
    def deco(f):
        for opt in reversed([
            click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(f"runs/{name}"),
                         show_default=True, help="Checkpoints, loss log and report."),
            click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help=f"Where the trained part goes (default: {default_out})."),
            click.option("--steps", type=click.IntRange(1), default=None, help="Default: the recipe's."),
            click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                         help=f"Training seed ({seed_note})."),
            click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start again."),
        ]):
            f = opt(f)
        return f
    return deco


@train.command(name="pixel-classifiers")
@click.option("--labelled", type=click.IntRange(1), default=30, show_default=True,
              help="Labelled world renders (image + true map) to learn from (the paper: 20-30).")
@click.option("--heldout", type=click.IntRange(1), default=100, show_default=True,
              help="Held-out renders the report's IoU is measured on.")
@_method_part_options("pixel-classifiers", "the family's pixel-classifiers/", "also picks the labelled renders")
@_family_option()
def pixel_classifiers(labelled, heldout, run_dir, out, steps, seed, fresh, family):
    """Train the pixelguide method's pixel classifiers (g_t per guidance timestep, g_multi) on the family's
    frozen U-Net features, from a few labelled renders; prints held-out IoU."""
    from ..methods.pixelguide.train import PIXEL_TRAIN, train_pixel_classifiers
    from ..methods.pixelguide.model import FOLDER
    from ..models.toon64 import TOON64_DIR

    family = family or TOON64_DIR
    out = out or family / FOLDER
    report = train_pixel_classifiers(family, run_dir, out, labelled, heldout,
                                     PIXEL_TRAIN.with_changes(steps, seed=seed), resume=not fresh)
    _report("pixel classifiers", {k: report[k] for k in ("labelled", "heldout", "steps", "g_multi", "g_t")}, out)


@train.command(name="identity-encoder")
@click.option("--model", default="toon-64", show_default=True,
              help="The frozen backbone it learns for: toon-64 or a diffusers SD folder (with --clip).")
@click.option("--clip", default=None,
              help="A CLIPModel folder or hub id whose image tower it reads (toon-64: its own).")
@click.option("--heldout", type=click.IntRange(1), default=48, show_default=True,
              help="Held-out identities the report's identity agreement is measured on.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's.")
@_method_part_options("identity-encoder", "toon-64's identity-encoder/", "also picks the training identities")
def identity_encoder(model, clip, heldout, batch_size, run_dir, out, steps, seed, fresh):
    """Train the MCDM pair generator's identity encoder (supp. §1.1): portrait -> two word embeddings that make
    the frozen U-Net draw that identity; prints its effect on held-out identities."""
    from ..methods.mcdm.model import IDENTITY_FOLDER
    from ..methods.mcdm.train import IDENTITY_TRAIN, train_identity_encoder
    from ..models.toon64 import TOON64_DIR

    if out is None and model != "toon-64":
        raise click.UsageError("give --out for a model other than toon-64")
    out = out or TOON64_DIR / IDENTITY_FOLDER
    with user_errors():
        report = train_identity_encoder(model, run_dir, out, IDENTITY_TRAIN.with_changes(steps, batch_size, seed=seed),
                                        heldout, resume=not fresh, clip=clip)
    _report("identity encoder", report, out)


@train.command(name="mcdm")
@click.option("--pairs", "pair_folders", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A folder of generated pairs (`semedit mcdm pairs`); repeatable.")
@click.option("--world-pairs", type=click.IntRange(0), default=0, show_default=True,
              help="Ground-truth world pairs to train on (instead of or besides generated ones).")
@click.option("--model", default="toon-64", show_default=True,
              help="The base model it is initialised from: toon-64 or a diffusers SD folder (with --clip).")
@click.option("--clip", default=None, help="A CLIPModel folder or hub id for the image embeddings (toon-64: its own).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's.")
@click.option("--no-spatial", is_flag=True, help="Without the spatial embedding c_s (the paper's \"w/o Spt\").")
@click.option("--no-image-embeddings", is_flag=True, help="Without the image embedding c_im (\"w/o Iemb\").")
@click.option("--from-scratch", is_flag=True, help="Random initial weights instead of the base model's (\"w/o Prt\").")
@_method_part_options("mcdm", "toon-64's mcdm/", "also picks each step's pairs")
def mcdm(pair_folders, world_pairs, model, clip, batch_size, no_spatial, no_image_embeddings, from_scratch, run_dir,
         out, steps, seed, fresh):
    """Train the MCDM (§3.3) on generated pairs: the base U-Net widened for the spatial embedding, the image
    embedding adapter, condition dropout and 5% reconstruction."""
    from ..methods.mcdm.model import MCDM_FOLDER
    from ..methods.mcdm.train import MCDM_TRAIN, train_mcdm
    from ..models.toon64 import TOON64_DIR

    if not pair_folders and not world_pairs:
        raise click.UsageError("give --pairs FOLDER (from `semedit mcdm pairs`) or --world-pairs N")
    if out is None and model != "toon-64":
        raise click.UsageError("give --out for a model other than toon-64")
    out = out or TOON64_DIR / MCDM_FOLDER
    with user_errors():
        report = train_mcdm(model, run_dir, out, pair_folders, world_pairs,
                            MCDM_TRAIN.with_changes(steps, batch_size, seed=seed), spatial=not no_spatial,
                            image_embeddings=not no_image_embeddings, pretrained=not from_scratch, resume=not fresh,
                            clip=clip)
    _report("MCDM", report, out)


@train.command(name="style-generator")
@click.option("--renders", type=click.IntRange(16), default=None, help="World renders to learn from (default: the "
              "recipe's 20,000).")
@click.option("--heldout", type=click.IntRange(100), default=500, show_default=True,
              help="Held-out renders the report's inversion quality is measured on.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's.")
@click.option("--minutes", type=click.FloatRange(1), default=None,
              help="Wall-clock budget of the autoencoder stage; its steps shorten to fit.")
@_method_part_options("style-generator", "toon-64's style-generator/", "also picks each step's renders")
def style_generator(renders, heldout, batch_size, minutes, run_dir, out, steps, seed, fresh):
    """Train DeltaEdit's style generator (StyleGAN2's synthesis structure at 64 px, whose style space S DeltaEdit
    edits) with its encoder (e4e's role: image -> W+ -> S), then its mapping network; prints the inversion
    quality and the split of S."""
    from ..methods.deltaedit.generator import STYLE_FOLDER
    from ..methods.deltaedit.train import STYLE_RENDERS, STYLE_TRAIN, train_style_generator
    from ..models.toon64 import TOON64_DIR

    out = out or TOON64_DIR / STYLE_FOLDER
    cfg = STYLE_TRAIN.with_changes(steps, batch_size, seed=seed, time_budget_minutes=minutes)
    with user_errors():
        report = train_style_generator(run_dir, out, cfg, renders=renders or STYLE_RENDERS, heldout=heldout,
                                       resume=not fresh)
    _report("style generator", report, out)


def _style_generator_options(f):
    """--style-generator and --renders of the commands that train on a style generator's codes of world renders."""
    f = click.option("--renders", type=click.IntRange(2), default=None,
                     help="World renders, inverted by the style encoder (default: 20,000).")(f)
    return click.option("--style-generator", "style_folder", default=None,
                        type=click.Path(file_okay=False, exists=True, path_type=Path),
                        help="The style generator whose encoder gives s (default: toon-64's style-generator/).")(f)


@train.command(name="delta-mapper")
@_style_generator_options
@click.option("--samples", type=click.IntRange(0), default=None,
              help="The generator's own samples besides them (§5.1; default: 20,000).")
@click.option("--space", type=click.Choice(["s", "w+"]), default="s", show_default=True,
              help="Map into S (the paper) or W+ (its ablation, §5.5.4).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's (64).")
@_method_part_options("delta-mapper", "toon-64's delta-mapper/", "also picks each step's pairs")
def delta_mapper(style_folder, renders, samples, space, batch_size, run_dir, out, steps, seed, fresh):
    """Train DeltaEdit's Delta Mapper without text (§3.2): CLIP image-embedding differences of random image pairs
    -> the style-space difference; prints Eq. 6's terms on held-out pairs."""
    from ..methods.deltaedit.generator import STYLE_FOLDER
    from ..methods.deltaedit.mapper import MAPPER_FOLDER
    from ..methods.deltaedit.train import MAPPER_RENDERS, MAPPER_SAMPLES, MAPPER_TRAIN, train_delta_mapper
    from ..models.toon64 import TOON64_DIR

    if out is None and space != "s":
        raise click.UsageError("give --out for the W+ ablation (the family's delta-mapper/ maps in S)")
    out = out or TOON64_DIR / MAPPER_FOLDER
    with user_errors():
        report = train_delta_mapper(run_dir, out, style_folder or TOON64_DIR / STYLE_FOLDER,
                                    MAPPER_TRAIN.with_changes(steps, batch_size, seed=seed),
                                    renders=renders or MAPPER_RENDERS,
                                    samples=MAPPER_SAMPLES if samples is None else samples, space=space,
                                    resume=not fresh)
    _report("Delta Mapper", report, out)


@train.command(name="style-diffusion")
@_style_generator_options
@click.option("--flat", is_flag=True, help="Every cross-attention layer sees all style tokens (default: each level "
              "of the U-Net its own level of s, as the paper's hierarchy).")
@click.option("--from-scratch", is_flag=True, help="Random initial U-Net weights instead of toon-64's.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's (16).")
@_method_part_options("style-diffusion", "toon-64's style-diffusion/", "also picks each step's renders")
def style_diffusion(style_folder, renders, flat, from_scratch, batch_size, run_dir, out, steps, seed, fresh):
    """Train DeltaEdit-D's style-conditioned diffusion (§4.2.2): toon-64's U-Net under tokens of the coarse, medium
    and fine styles of each render; prints the PSNR of DDIM inversion and reconstruction under s."""
    from ..methods.deltaedit.diffusion import DIFFUSION_FOLDER
    from ..methods.deltaedit.generator import STYLE_FOLDER
    from ..methods.deltaedit.train import DIFFUSION_RENDERS, DIFFUSION_TRAIN, train_style_diffusion
    from ..models.toon64 import TOON64_DIR

    if out is None and (flat or from_scratch):
        raise click.UsageError("give --out for an ablation (the family's style-diffusion/ is the paper's recipe)")
    out = out or TOON64_DIR / DIFFUSION_FOLDER
    with user_errors():
        report = train_style_diffusion(run_dir, out, style_folder or TOON64_DIR / STYLE_FOLDER,
                                       DIFFUSION_TRAIN.with_changes(steps, batch_size, seed=seed),
                                       renders=renders or DIFFUSION_RENDERS, hierarchical=not flat,
                                       pretrained=not from_scratch, resume=not fresh)
    _report("style diffusion", report, out)

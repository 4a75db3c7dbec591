"""Training the MCDM paper's own parts on toon-64.

The identity encoder (supp. §1.1): c_id = encoder(CLIP image tokens of a portrait), put before "[X]" in a
prompt, is trained so that the frozen U-Net denoises a render of *that identity* under the prompt (the
diffusion objective, ELITE's recipe, with U-Net, text encoder and CLIP frozen). The world gives what FFHQ
cannot: another render of the same identity with everything else (expression, costume, glasses, background,
pose) drawn afresh and named in the prompt, so that c_id can only help with what the prompt does not say, the
identity. The paper's FFHQ becomes world renders of identities drawn from the world's distribution.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from ...engine.conditioning import Condition, decode_latents, encode_text, encode_text_with_words
from ...engine.ddim import alphas_cumprod
from ...engine.generate import generate_latents
from ...models.backbone import load_backbone, load_evaluator
from ...models.vae import encode_latents
from ...training.diffusion import diffusion_loss, noised
from ...training.loop import TrainConfig, TrainRun
from ...world import ToonRecord, captions, describe, identity_agreement, record_seed, render, sample_record
from ...world.captions import COSTUME_PHRASE, EXPRESSION_PHRASE
from ...world.edits import PAIR_DIRECTIONS, sample_pair
from .model import MCDM, IdentityEncoder, ImageEmbeddingAdapter, clip_image_tokens, widen_conv_in
from .pairs import PairDirection, read_pairs

IDENTITY_TRAIN = TrainConfig(steps=2500, batch_size=8, lr=1e-4, warmup=100, weight_decay=0.0, grad_clip=1.0,
                             checkpoint_every=250, log_every=25, seed=0)
IDENTITY_SEED, HELDOUT_SEED = 21_000_000, 22_000_000  # world records of the training and held-out identities
# What the prompt names besides the person; c_id must carry the rest.
NAMED_FIELDS = ("presentation", "expression", "glasses", "costume", "background")


def same_identity(source: ToonRecord, seed) -> ToonRecord:
    """Another record of `source`'s identity: every other attribute and the pose drawn afresh."""
    return sample_record(seed).replace(**source.identity())


def identity_prompt(rec: ToonRecord, g: np.random.Generator) -> str:
    """A training prompt of `rec` that names what is not identity: the world's caption of those fields, or the
    MCDM paper's "a [X], [Z]" templates (supp. §1.1), which the pair generator uses."""
    return [describe(rec, NAMED_FIELDS), captions(rec)["costume"], captions(rec)["expression"]][int(g.integers(3))]


@torch.no_grad()
def identity_effect(backbone, encoder: IdentityEncoder | None, evaluator, n: int, steps: int = 20,
                    seed: int = HELDOUT_SEED) -> list[float]:
    """Identity agreement, per held-out identity, of "a [X], normal costume" generated with c_id of a render of
    that identity put before [X] (or, with no encoder, without it: the chance level of the prompt alone)."""
    out, null = [], encode_text(backbone, [""])
    for i in range(n):
        source = sample_record(record_seed(seed, i))
        prompt = f"a {source.presentation}, normal costume"
        if encoder is None:
            text = encode_text(backbone, [prompt])
        else:
            words = encoder(clip_image_tokens(backbone.clip, backbone.clip_processor, render(source).image[None]))
            text = encode_text_with_words(backbone, [prompt], source.presentation, words)
        z = generate_latents(backbone, Condition(text), Condition(null), steps, 7.5, seed=i)
        out.append(identity_agreement(evaluator.predict(decode_latents(backbone, z))[0], source))
    return out


def train_identity_encoder(model: str, run_dir: str | Path, out_dir: str | Path | None,
                           cfg: TrainConfig = IDENTITY_TRAIN, heldout: int = 48, resume: bool = True,
                           clip: str | None = None) -> dict:
    """Train the identity encoder on the frozen U-Net of `model` (toon-64 or a diffusers folder, with `clip`
    where it has none), measure its effect on `heldout` identities (the evaluator's identity agreement with and
    without c_id) and save it (fp16 safetensors) to `out_dir`."""
    run_dir = Path(run_dir)
    backbone = load_backbone(model, clip=clip, device="cpu")
    if backbone.clip is None:
        raise ValueError(f"{model} has no CLIP image encoder; name one (clip=...)")
    for part in (backbone.unet, backbone.text_encoder, backbone.clip, backbone.vae):
        part.requires_grad_(False)
    alphas = alphas_cumprod(backbone.scheduler_config).float()
    torch.manual_seed(cfg.seed)
    encoder = IdentityEncoder(image_dim=backbone.clip.config.vision_config.hidden_size,
                              word_dim=backbone.text_encoder.get_input_embeddings().weight.shape[1])
    run = TrainRun(run_dir, cfg, encoder, "identity encoder", resume=resume)

    def loss_fn(step, g):
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))  # the step's (and process's) data
        sources = [sample_record(record_seed(IDENTITY_SEED + cfg.seed, int(i)))
                   for i in rng.integers(0, 2**31, cfg.batch_size)]
        targets = [same_identity(s, rng) for s in sources]
        tokens = clip_image_tokens(backbone.clip, backbone.clip_processor, np.stack([render(s).image for s in sources]))
        words = run.module(tokens)
        prompts = [identity_prompt(t, rng) for t in targets]
        text = torch.cat([encode_text_with_words(backbone, [p], t.presentation, words[n:n + 1])
                          for n, (p, t) in enumerate(zip(prompts, targets))])
        with torch.no_grad():
            z0 = encode_latents(backbone.vae, np.stack([render(t).image for t in targets]))
        x_t, noise, t = noised(z0, alphas, g)
        pred = backbone.unet(x_t, t, encoder_hidden_states=text).sample
        return diffusion_loss(pred, noise, t, alphas), {"word_norm": words.detach().norm(dim=-1).mean()}

    t0 = time.perf_counter()
    run.run(loss_fn)
    seconds = time.perf_counter() - t0
    encoder = run.final_module().float().eval()
    evaluator = load_evaluator()
    with_id, without = identity_effect(backbone, encoder, evaluator, heldout), identity_effect(backbone, None,
                                                                                              evaluator, heldout)
    se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))  # noqa: E731
    report = {"steps": run.step, "seed": cfg.seed, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "train_seconds_this_run": round(seconds, 1), "params": sum(p.numel() for p in encoder.parameters()),
              "heldout": heldout,
              "identity_agreement_with_c_id": [float(np.mean(with_id)), se(with_id)],
              "identity_agreement_without": [float(np.mean(without)), se(without)]}
    if out_dir is not None:
        encoder.to(torch.float16).save_pretrained(Path(out_dir), safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


# The MCDM (§3.3, supp. §1.2). The paper: batch 4, lr 5e-6, 200,000 steps (3 days on an A100); toon-64's
# U-Net is about 1/140 of SD's and learns here in a few thousand steps at a larger rate.
MCDM_TRAIN = TrainConfig(steps=3000, batch_size=16, lr=1e-4, warmup=100, weight_decay=1e-2, grad_clip=1.0,
                         checkpoint_every=250, log_every=25, seed=0)
RECONSTRUCTION = 0.05  # §3.3: 5% of the time the target is x_A under p_a
# The official code's condition dropout (one draw u per example): u < 0.05 drops c_s, < 0.10 c_im, < 0.15 the
# text, < 0.20 all three (§3.3: 20% over any combination).
DROP_SPATIAL, DROP_IMAGE, DROP_TEXT, DROP_ALL = 0.05, 0.10, 0.15, 0.20
WORLD_PAIR_SEED = 23_000_000  # the ground-truth pairs of the "world pairs" training set


@dataclass
class PairTensors:
    """A training set of pairs, encoded once: latents of x_A and x_B, CLIP tokens of x_A, and for each pair the
    text embeddings of p_a and p_b in the paper's words ("a woman, normal costume") and as full descriptions."""
    source: torch.Tensor
    target: torch.Tensor
    clip_tokens: torch.Tensor
    text_a: torch.Tensor  # (N, 2, L, D): [template, description]
    text_b: torch.Tensor
    directions: frozenset = frozenset()  # {(attribute, target value)}

    TENSORS = ("source", "target", "clip_tokens", "text_a", "text_b")

    def __len__(self) -> int:
        return len(self.source)

    @classmethod
    def join(cls, sets: list["PairTensors"]) -> "PairTensors":
        return cls(*(torch.cat([getattr(s, f) for s in sets]) for f in cls.TENSORS),
                   directions=frozenset().union(*(s.directions for s in sets)))


def direction_phrases(directions) -> dict:
    """The directions a model is trained on, in the prompts' words (the paper's [Y] and [Z] phrases)."""
    phrases = {"costume": COSTUME_PHRASE, "expression": EXPRESSION_PHRASE}
    out = {}
    for attribute, target in sorted(directions):
        source = PAIR_DIRECTIONS[attribute][0]
        entry = out.setdefault(attribute, {"source": phrases[attribute][source], "targets": {}})
        entry["targets"][target] = phrases[attribute][target]
    return out


def pair_texts(source: ToonRecord, target: ToonRecord, attribute: str) -> tuple[list[str], list[str]]:
    """p_a and p_b of a pair: the paper's "a [X], [Y]" and the world's full description, so that the trained model
    follows both a direction's words and a caption such as `--set` edits give."""
    return [captions(source)[attribute], describe(source)], [captions(target)[attribute], describe(target)]


@torch.no_grad()
def encode_pairs(backbone, sources: np.ndarray, targets: np.ndarray, texts_a: list[list[str]],
                 texts_b: list[list[str]], directions, batch: int = 64) -> PairTensors:
    parts = {k: [] for k in PairTensors.TENSORS}
    for i in range(0, len(sources), batch):
        sl = slice(i, i + batch)
        parts["source"].append(encode_latents(backbone.vae, sources[sl]))
        parts["target"].append(encode_latents(backbone.vae, targets[sl]))
        parts["clip_tokens"].append(  # none without a CLIP: a model without image embeddings needs none
            clip_image_tokens(backbone.clip, backbone.clip_processor, sources[sl]) if backbone.clip is not None
            else torch.zeros(len(sources[sl]), 0, 0))
        for key, texts in (("text_a", texts_a[sl]), ("text_b", texts_b[sl])):
            e = encode_text(backbone, [t for pair in texts for t in pair])
            parts[key].append(e.view(len(texts), 2, *e.shape[1:]))
    return PairTensors(**{k: torch.cat(v) for k, v in parts.items()}, directions=frozenset(directions))


def generated_pair_set(backbone, folders) -> PairTensors:
    """The pairs of `semedit mcdm pairs` folders."""
    pairs = [p for f in folders for p in read_pairs(f)]
    if not pairs:
        raise ValueError(f"no pairs in {', '.join(map(str, folders))}; make them with `semedit mcdm pairs`")
    texts, directions = [], set()
    for p in pairs:
        d = PairDirection.parse(p["direction"])
        person = ToonRecord.from_dict(p["identity"])
        texts.append(pair_texts(person.replace(**{d.attribute: d.source}), person.replace(**{d.attribute: d.target}),
                                d.attribute))
        directions.add((d.attribute, d.target))
    return encode_pairs(backbone, np.stack([p["left"] for p in pairs]), np.stack([p["right"] for p in pairs]),
                        [t[0] for t in texts], [t[1] for t in texts], directions)


def world_pair_set(backbone, n: int, seed: int = WORLD_PAIR_SEED) -> PairTensors:
    """n ground-truth pairs of the world (the same person and pose, only the direction's attribute changed), half
    costume and half expression: what no generator gives, to measure what the generated pairs cost."""
    records = [sample_pair(record_seed(seed, i), ("costume", "expression")[i % 2]) for i in range(n)]
    texts = [pair_texts(s, t, kind) for s, t, kind in records]
    return encode_pairs(backbone, np.stack([render(s).image for s, _, _ in records]),
                        np.stack([render(t).image for _, t, _ in records]), [t[0] for t in texts],
                        [t[1] for t in texts], {(kind, getattr(t, kind)) for _, t, kind in records})


def new_mcdm(backbone, spatial: bool = True, image_embeddings: bool = True, pretrained: bool = True) -> MCDM:
    """The MCDM before training (§3.3): the backbone's U-Net, widened for c_s with zero weights, and the
    identity-initialised adapter; the paper's ablations drop c_s ("w/o Spt"), c_im ("w/o Iemb") or the
    pretrained weights ("w/o Prt")."""
    unet = backbone.unet
    if spatial:
        unet = widen_conv_in(unet, unet.config.in_channels, pretrained)
    else:
        unet = copy.deepcopy(unet) if pretrained else UNet2DConditionModel.from_config(unet.config)
    adapter = None
    if image_embeddings:
        vision = backbone.clip.config.vision_config
        adapter = ImageEmbeddingAdapter(
            clip_tokens=(vision.image_size // vision.patch_size) ** 2 + 1, clip_dim=vision.hidden_size,
            latent_channels=unet.config.out_channels, latent_size=unet.config.sample_size,
            cross_attention_dim=unet.config.cross_attention_dim)
    return MCDM(unet.float().requires_grad_(True), adapter)


def train_mcdm(model: str, run_dir: str | Path, out_dir: str | Path | None, pair_folders=(), world_pairs: int = 0,
               cfg: TrainConfig = MCDM_TRAIN, spatial: bool = True, image_embeddings: bool = True,
               pretrained: bool = True, resume: bool = True, clip: str | None = None) -> dict:
    """Train the MCDM of `model` on generated pairs (`pair_folders`) and/or `world_pairs` ground-truth pairs and
    save it (fp16) to `out_dir`: the eps loss of the target x_B under {c_s, c_im, p_b}, with 5% reconstruction
    and the condition dropout."""
    run_dir = Path(run_dir)
    backbone = load_backbone(model, clip=clip, device="cpu")
    if image_embeddings and backbone.clip is None:
        raise ValueError(f"{model} has no CLIP image encoder for the image embeddings; name one (clip=...)")
    sets = ([generated_pair_set(backbone, pair_folders)] if pair_folders else []) + \
        ([world_pair_set(backbone, world_pairs)] if world_pairs else [])
    if not sets:
        raise ValueError("give pairs to train on: generated pair folders or a number of world pairs")
    data = PairTensors.join(sets)
    black = np.zeros((1, backbone.image_size, backbone.image_size, 3), np.uint8)
    null_latent = encode_latents(backbone.vae, black)
    null_tokens = clip_image_tokens(backbone.clip, backbone.clip_processor, black) if image_embeddings else None
    null_text = encode_text(backbone, [""])
    alphas = alphas_cumprod(backbone.scheduler_config).float()
    torch.manual_seed(cfg.seed)
    mcdm = new_mcdm(backbone, spatial, image_embeddings, pretrained)
    mcdm.directions = direction_phrases(data.directions)
    run = TrainRun(run_dir, cfg, mcdm, "MCDM", resume=resume)

    def loss_fn(step, g):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        u = torch.rand(cfg.batch_size, generator=g)
        recon = torch.rand(cfg.batch_size, generator=g) < RECONSTRUCTION
        wording = torch.randint(2, (cfg.batch_size,), generator=g)
        source, target = data.source[idx], torch.where(recon[:, None, None, None], data.source[idx], data.target[idx])
        text_a, text_b = data.text_a[idx, wording], data.text_b[idx, wording]
        text = torch.where(recon[:, None, None], text_a, text_b)
        drop_s = (u < DROP_SPATIAL) | ((u >= DROP_TEXT) & (u < DROP_ALL))
        drop_im = ((u >= DROP_SPATIAL) & (u < DROP_IMAGE)) | ((u >= DROP_TEXT) & (u < DROP_ALL))
        drop_text = (u >= DROP_IMAGE) & (u < DROP_ALL)
        c_s = torch.where(drop_s[:, None, None, None], torch.zeros_like(source), source)
        text = torch.where(drop_text[:, None, None], null_text.expand_as(text), text)
        image = None
        if image_embeddings:  # a dropped c_im is the black image's, as at inference
            tokens = torch.where(drop_im[:, None, None], null_tokens, data.clip_tokens[idx])
            image = (tokens, torch.where(drop_im[:, None, None, None], null_latent, source))
        x_t, noise, t = noised(target, alphas, g)
        pred = run.module(x_t, t, text, c_s, image=image)
        return F.mse_loss(pred, noise), {}

    t0 = time.perf_counter()
    run.run(loss_fn)
    seconds = time.perf_counter() - t0
    trained = run.final_module().eval()
    trained.directions = mcdm.directions
    report = {"steps": run.step, "seed": cfg.seed, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "pairs": len(data), "directions": sorted(f"{a}={t}" for a, t in data.directions),
              "pair_folders": [str(f) for f in pair_folders], "world_pairs": world_pairs,
              "spatial": spatial, "image_embeddings": image_embeddings, "pretrained": pretrained,
              "train_seconds_this_run": round(seconds, 1),
              "params": sum(p.numel() for p in trained.parameters())}
    if out_dir is not None:
        trained.save_pretrained(Path(out_dir))
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report

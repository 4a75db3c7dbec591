"""Training the MCDM paper's own parts on toon-64.

The identity encoder (supp. §1.1): c_id = encoder(CLIP image tokens of a portrait), put before "[X]" in a
prompt, is trained so that the frozen U-Net denoises a render of *that identity* under the prompt (the
diffusion objective, ELITE's recipe, with U-Net, text encoder and CLIP frozen). The world gives what FFHQ
cannot: another render of the same identity with everything else (expression, costume, glasses, background,
pose) drawn afresh and named in the prompt, so that c_id can only help with what the prompt does not say, the
identity. The paper's FFHQ becomes world renders of identities drawn from the world's distribution.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ...engine.conditioning import Condition, decode_latents, encode_text, encode_text_with_words
from ...engine.ddim import alphas_cumprod
from ...engine.generate import generate_latents
from ...models.backbone import load_backbone, load_evaluator
from ...models.vae import encode_latents
from ...training.diffusion import diffusion_loss, noised
from ...training.loop import TrainConfig, TrainRun
from ...world import IDENTITY_FIELDS, ToonRecord, captions, describe, observable, record_seed, render, sample_record
from .model import IdentityEncoder, clip_image_tokens

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


def identity_agreement(pred: dict, rec: ToonRecord) -> float:
    """The share of the record's observable identity attributes the evaluator reads back."""
    shown = [k for k in IDENTITY_FIELDS if observable(rec)[k]]
    return float(np.mean([pred[k] == getattr(rec, k) for k in shown]))


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

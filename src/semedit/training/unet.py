"""Training the toon-64 text-conditional U-Net on VAE latents of world renders and diptychs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.text import encode_prompts, load_text_encoder, load_tokenizer
from ..models.toon64 import SCHEDULER_CONFIG, UNET_CONFIG
from .caches import latents_cache
from .captions import training_caption
from .data import PairCache, RenderCache
from .diffusion import diffusion_loss, face_loss_weights, noised
from .loop import TrainConfig, TrainRun

UNET_TRAIN = TrainConfig(steps=3000, batch_size=32, lr=6e-4, warmup=200, ema_decay=0.999, checkpoint_every=250,
                         seed=0)
CAPTION_DROPOUT = 0.1  # empty caption, for classifier-free guidance
DIPTYCH_EVERY = 8  # one diptych batch (64 x 128, 2.5x the cost of a single one) in this many steps


def train_unet(cache_dir: str | Path, family_dir: str | Path, run_dir: str | Path, out_dir: str | Path,
               cfg: TrainConfig = UNET_TRAIN, config: dict | None = None, resume: bool = True,
               init_from: str | Path | None = None, text_encoder_dir: str | Path | None = None,
               face_loss_weight: float = 0.0) -> dict:
    """Train the U-Net from scratch, or go on from the weights in `init_from` (a fresh optimizer),
    conditioned on the family's text encoder or the one in `text_encoder_dir` (`load_text_encoder`);
    `face_loss_weight` > 0 weights the loss of single portraits towards the face (`face_loss_weights`;
    diptychs keep the plain loss)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    family_dir, run_dir = Path(family_dir), Path(run_dir)
    tokenizer = load_tokenizer(family_dir / "tokenizer")
    text_encoder = load_text_encoder(text_encoder_dir or family_dir / "text_encoder")
    train, pairs = RenderCache(Path(cache_dir) / "train"), PairCache(Path(cache_dir) / "pairs")
    torch.manual_seed(cfg.seed)
    if init_from is not None:
        unet = UNet2DConditionModel.from_pretrained(init_from, torch_dtype=torch.float32)
    else:
        unet = UNet2DConditionModel(**(config or UNET_CONFIG))
    run = TrainRun(run_dir, cfg, unet, "unet", resume=resume)
    z_single = latents_cache(cache_dir, "train", train.arrays["image"], family_dir / "vae", run.device)
    z_pair = latents_cache(cache_dir, "pairs", pairs.image, family_dir / "vae", run.device)
    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    text_encoder.to(run.device)
    alphas = scheduler.alphas_cumprod

    def loss_fn(step, g):
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=g)))
        pixel_weights = None
        if DIPTYCH_EVERY and step % DIPTYCH_EVERY == DIPTYCH_EVERY - 1:
            idx = torch.randint(len(pairs), (cfg.batch_size,), generator=g)
            x0 = z_pair[idx]
            texts = [pairs.meta[i]["caption"] for i in idx.tolist()]
        else:
            idx = torch.randint(len(train), (cfg.batch_size,), generator=g)
            x0 = z_single[idx]
            texts = [training_caption(train.records[i], rng) for i in idx.tolist()]
            if face_loss_weight:
                pixel_weights = face_loss_weights(train.arrays["seg"][idx.numpy()], x0.shape[-1], face_loss_weight)
        texts = ["" if rng.random() < CAPTION_DROPOUT else t for t in texts]
        xt, noise, t = noised(x0.to(run.device), alphas, g)
        cond = encode_prompts(text_encoder, tokenizer, texts)
        pred = run.module(xt, t, encoder_hidden_states=cond).sample
        return diffusion_loss(pred, noise, t, alphas, pixel_weights), {}

    run.run(loss_fn)
    unet = run.final_module().float().eval()
    out_dir = Path(out_dir)
    unet.to("cpu", torch.float16).save_pretrained(out_dir, safe_serialization=True)
    report = {"params": sum(p.numel() for p in unet.parameters()), "steps": run.step,
              "face_loss_weight": face_loss_weight}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


"""Training toon-64 ControlNets (pose drawing, scribble map) on a frozen toon-64 U-Net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.images import control_tensor
from ..models.text import encode_prompts, load_text_encoder, load_tokenizer
from ..models.toon64 import CONTROLNET_CONDITIONING_CHANNELS, SCHEDULER_CONFIG
from .caches import latents_cache
from .captions import training_caption
from .data import RenderCache
from .diffusion import diffusion_loss, noised
from .loop import TrainConfig, TrainRun

CONTROLNET_TRAIN = TrainConfig(steps=2000, batch_size=32, lr=3e-4, warmup=100, checkpoint_every=500, seed=0)
CAPTION_DROPOUT = 0.3  # the ControlNet paper drops 50% of prompts; we keep more text with tiny captions
CONTROL_KINDS = ("pose", "scribble")


@torch.no_grad()
def residual_norm(controlnet, unet_latents, t, cond, control) -> float:
    """Mean absolute ControlNet residual: zero for a fresh ControlNet (zero-initialised outputs)."""
    down, mid = controlnet(unet_latents, t, encoder_hidden_states=cond, controlnet_cond=control, return_dict=False)
    return float(torch.cat([r.abs().flatten() for r in [*down, mid]]).mean())


def train_controlnet(kind: str, cache_dir: str | Path, family_dir: str | Path, run_dir: str | Path,
                     out_dir: str | Path, cfg: TrainConfig = CONTROLNET_TRAIN, resume: bool = True,
                     init_from: str | Path | None = None, text_encoder_dir: str | Path | None = None,
                     unet_dir: str | Path | None = None) -> dict:
    """Train a ControlNet from the U-Net's encoder, or go on from the weights in `init_from` (a fresh
    optimizer); the frozen text encoder and U-Net are the family's unless `text_encoder_dir` /
    `unet_dir` name others (a candidate family trained on a new text tower)."""
    from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CONTROL_KINDS)}, got {kind!r}")
    family_dir, run_dir = Path(family_dir), Path(run_dir)
    tokenizer = load_tokenizer(family_dir / "tokenizer")
    text_encoder = load_text_encoder(text_encoder_dir or family_dir / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(unet_dir or family_dir / "unet", torch_dtype=torch.float32)
    unet.eval()
    unet.requires_grad_(False)
    train = RenderCache(Path(cache_dir) / "train")
    maps = train.arrays[kind]
    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    torch.manual_seed(cfg.seed)
    if init_from is not None:
        controlnet = ControlNetModel.from_pretrained(init_from, torch_dtype=torch.float32)
    else:
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROLNET_CONDITIONING_CHANNELS)
    run = TrainRun(run_dir, cfg, controlnet, f"controlnet-{kind}", resume=resume)
    unet.to(run.device)
    text_encoder.to(run.device)
    z = latents_cache(cache_dir, "train", train.arrays["image"], family_dir / "vae", run.device)
    alphas = scheduler.alphas_cumprod

    def loss_fn(step, g):
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=g)))
        idx = np.sort(torch.randint(len(train), (cfg.batch_size,), generator=g).numpy())
        x0 = z[torch.from_numpy(idx)].to(run.device)
        texts = ["" if rng.random() < CAPTION_DROPOUT else training_caption(train.records[i], rng) for i in idx]
        xt, noise, t = noised(x0, alphas, g)
        cond = encode_prompts(text_encoder, tokenizer, texts)
        control = control_tensor(maps[idx]).to(run.device)
        down, mid = run.module(xt, t, encoder_hidden_states=cond, controlnet_cond=control, return_dict=False)
        pred = unet(xt, t, encoder_hidden_states=cond, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        return diffusion_loss(pred, noise, t, alphas), {}

    k = min(16, len(train))  # a fixed probe batch: how far the residuals moved off zero
    probe = (z[:k].to(run.device), torch.full((k,), 500, device=run.device),
             encode_prompts(text_encoder, tokenizer, [""] * k), control_tensor(maps[:k]).to(run.device))

    run.run(loss_fn, on_checkpoint=lambda step: {"residual_mean_abs": residual_norm(run.unwrapped(), *probe)})
    controlnet = run.final_module().float().eval()
    report = {"kind": kind, "params": sum(p.numel() for p in controlnet.parameters()), "steps": run.step,
              "residual_mean_abs": residual_norm(controlnet, *probe)}
    controlnet.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report

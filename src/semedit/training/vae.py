"""Training the toon-64 VAE (AutoencoderKL, 64x64x3 -> 4x16x16) and measuring its latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.metrics import psnr
from ..models.images import to_tensor
from ..models.toon64 import VAE_CONFIG
from ..models.vae import encode_latents, reconstruct
from .caches import latents_cache
from .data import RenderCache
from .loop import TrainConfig, TrainRun

VAE_TRAIN = TrainConfig(steps=7000, batch_size=24, lr=1e-3, warmup=100, checkpoint_every=250, ema_decay=0.999, seed=0)
KL_WEIGHT = 1e-6  # latents stay nearly deterministic, as in SD's VAE (kl weight 1e-6)
# Decoder fine-tuning on the frozen encoder's latents (the U-Net's latent space does not move): the iris
# is ~1.5 px wide and the plain loss barely sees it, so the trained VAE returned green irises as blue.
DECODER_TRAIN = TrainConfig(steps=1500, batch_size=24, lr=3e-4, warmup=50, checkpoint_every=250, ema_decay=0.995,
                            seed=0)
IRIS_WEIGHT = 30.0  # loss weight of an iris pixel relative to any other


def heldout_psnr(recon: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of reconstructions."""
    return np.array([psnr(r, x) for r, x in zip(recon, images)])


@torch.no_grad()
def center_latents(vae, images: np.ndarray) -> dict:
    """Measure the latent distribution on `images`, fold the per-channel mean into the weights
    (so latents are zero-mean for every Stable Diffusion pipeline, which applies no shift) and
    set `scaling_factor` to 1 / std."""
    vae.eval()
    z = encode_latents(vae, images, batch=200) / vae.config.scaling_factor  # the unscaled posterior means
    mean = z.mean(dim=(0, 2, 3))
    vae.quant_conv.bias[: mean.numel()] -= mean
    w = vae.post_quant_conv.weight[:, :, 0, 0]
    vae.post_quant_conv.bias += w @ mean
    std = (z - mean[None, :, None, None]).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return {"latent_channel_mean_removed": [round(v, 4) for v in mean.tolist()], "latent_std": round(std, 4),
            "scaling_factor": round(1.0 / std, 4)}


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE + 0.5 L1 of a reconstruction, each pixel weighted by `weight` (N x 1 x H x W) if given."""
    err = (y - x) ** 2 + 0.5 * (y - x).abs()
    if weight is None:
        return err.mean()
    return (err * weight).sum() / (weight.sum() * err.shape[1])


def iris_mask(images: np.ndarray, seg: np.ndarray, records) -> torch.Tensor:
    """N x 1 x H x W: the pixels of the eyes class within 32/255 of the record's iris colour (world/render.py
    IRIS), grown by one pixel so the iris's anti-aliased rim counts too. Zero where the eyes are closed."""
    from ..world import observable
    from ..world.render import IRIS, SEG_CLASSES

    iris = np.array([IRIS[r.eye_colour] if observable(r)["eye_colour"] else (9.0, 9.0, 9.0) for r in records])
    near = np.abs(images / 255.0 - iris[:, None, None, :]).max(-1) < 32 / 255
    mask = torch.from_numpy(near & (np.asarray(seg) == SEG_CLASSES.index("eyes")))[:, None].float()
    return F.max_pool2d(mask, 3, 1, 1)


def iris_error(recon: np.ndarray, images: np.ndarray, seg: np.ndarray, records) -> float:
    """Mean absolute error (0-255) of a reconstruction on the iris pixels of its renders."""
    m = iris_mask(images, seg, records)[:, 0].numpy() > 0
    return float(np.abs(recon.astype(np.float64) - images)[m].mean()) if m.any() else float("nan")


def _batch(cache: RenderCache, cfg, g, iris_weight: float, device):
    """A training batch: its indices, its images in [-1, 1] and their pixel weights (1 + `iris_weight` on
    the iris; None for 0)."""
    idx = np.sort(torch.randint(len(cache), (cfg.batch_size,), generator=g).numpy())
    images = cache.arrays["image"][idx]
    x = to_tensor(images).to(device)
    if not iris_weight:
        return idx, x, None
    mask = iris_mask(images, cache.arrays["seg"][idx], [cache.records[i] for i in idx])
    return idx, x, 1 + iris_weight * mask.to(device)


def _heldout_probe(heldout: RenderCache, n: int = 200):
    """The checkpoint probe: PSNR and iris error on the first `n` held-out renders."""
    images, seg, records = np.asarray(heldout.arrays["image"][:n]), heldout.arrays["seg"][:n], heldout.records[:n]

    def probe(vae) -> dict:
        rec = reconstruct(vae, images)
        return {f"heldout_psnr_{n}": float(heldout_psnr(rec, images).mean()),
                f"heldout_iris_error_{n}": iris_error(rec, images, seg, records)}
    return probe


def _finish(vae, run, run_dir, out_dir, heldout, n, extra) -> dict:
    held = np.asarray(heldout.arrays["image"][:n])
    rec = reconstruct(vae, held)
    p = heldout_psnr(rec, held)
    report = {"params": sum(t.numel() for t in vae.parameters()), "steps": run.step,
              "heldout_psnr_mean": round(float(p.mean()), 2), "heldout_psnr_min": round(float(p.min()), 2),
              "heldout_iris_error": round(iris_error(rec, held, heldout.arrays["seg"][:n], heldout.records[:n]), 2),
              "heldout_n": int(len(held)), "scaling_factor": round(vae.config.scaling_factor, 4), **extra}
    vae.to(torch.float16).save_pretrained(Path(out_dir), safe_serialization=True)
    (Path(run_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report


def train_vae(cache_dir: str | Path, run_dir: str | Path, out_dir: str | Path, cfg: TrainConfig = VAE_TRAIN,
              config: dict | None = None, resume: bool = True, eval_n: int = 1000, iris_weight: float = 0.0) -> dict:
    """Train the VAE from scratch; `iris_weight` > 0 weights each iris pixel's loss by 1 + it."""
    from diffusers import AutoencoderKL

    train, heldout = RenderCache(Path(cache_dir) / "train"), RenderCache(Path(cache_dir) / "heldout")
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**(config or VAE_CONFIG))
    run = TrainRun(run_dir, cfg, vae, "vae", resume=resume)
    probe = _heldout_probe(heldout)

    def loss_fn(step, g):
        _, x, w = _batch(train, cfg, g, iris_weight, run.device)
        post = run.module.encode(x).latent_dist
        y = run.module.decode(post.sample(generator=g if x.device.type == "cpu" else None)).sample
        return reconstruction_loss(y, x, w) + KL_WEIGHT * post.kl().mean(), {"mse": F.mse_loss(y, x).detach()}

    run.run(loss_fn, on_checkpoint=lambda step: probe(run.final_module()))
    vae = run.final_module().float().eval()
    stats = center_latents(vae, np.asarray(train.arrays["image"][:2000]))
    return _finish(vae, run, run_dir, out_dir, heldout, eval_n, {**stats, "iris_weight": iris_weight})


def finetune_decoder(cache_dir: str | Path, vae_dir: str | Path, run_dir: str | Path, out_dir: str | Path,
                     cfg: TrainConfig = DECODER_TRAIN, iris_weight: float = IRIS_WEIGHT, resume: bool = True,
                     eval_n: int = 1000) -> dict:
    """Train the decoder (and post_quant_conv) of the VAE in `vae_dir` on its own encoder's latents of the
    training renders, iris pixels weighted by 1 + `iris_weight`. Encoder, quant_conv and scaling_factor stay
    as they are, so the latents (and a U-Net or ControlNet trained on them) stay valid."""
    from diffusers import AutoencoderKL

    train, heldout = RenderCache(Path(cache_dir) / "train"), RenderCache(Path(cache_dir) / "heldout")
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32)
    vae.requires_grad_(False)
    decoder = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in decoder:
        p.requires_grad_(True)
    z = latents_cache(cache_dir, "train", train.arrays["image"], Path(vae_dir)) / vae.config.scaling_factor
    run = TrainRun(run_dir, cfg, vae, "vae-decoder", params=decoder, resume=resume)
    probe = _heldout_probe(heldout)

    def loss_fn(step, g):
        idx, x, w = _batch(train, cfg, g, iris_weight, run.device)
        return reconstruction_loss(run.module.decode(z[idx].to(run.device)).sample, x, w), {}

    run.run(loss_fn, on_checkpoint=lambda step: probe(run.final_module()))
    return _finish(run.final_module().float().eval(), run, run_dir, out_dir, heldout, eval_n,
                   {"iris_weight": iris_weight, "init_from": str(vae_dir)})


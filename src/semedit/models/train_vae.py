"""Training the toon-64 VAE (AutoencoderKL, 64x64x3 -> 4x16x16) and measuring its latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import RenderCache
from .toon64 import VAE_CONFIG
from .training import TrainConfig, TrainRun

VAE_TRAIN = TrainConfig(steps=7000, batch_size=24, lr=1e-3, warmup=100, checkpoint_every=250, ema_decay=0.999, seed=0)
KL_WEIGHT = 1e-6  # latents stay nearly deterministic, as in SD's VAE (kl weight 1e-6)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float Nx3xHxW in [-1, 1]."""
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float Nx3xHxW in [-1, 1] -> uint8 NxHxWx3."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 images."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """Encode (posterior mode) and decode uint8 images; returns uint8 reconstructions."""
    vae.eval()
    out = []
    dev = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    for i in range(0, len(images), batch):
        x = to_tensor(images[i:i + batch]).to(dev, dtype)
        out.append(to_uint8(vae.decode(vae.encode(x).latent_dist.mode()).sample.float()))
    return np.concatenate(out)


@torch.no_grad()
def center_latents(vae, images: np.ndarray) -> dict:
    """Measure the latent distribution on `images`, fold the per-channel mean into the weights
    (so latents are zero-mean for every Stable Diffusion pipeline, which applies no shift) and
    set `scaling_factor` to 1 / std."""
    vae.eval()
    z = torch.cat([vae.encode(to_tensor(images[i:i + 200])).latent_dist.mode() for i in range(0, len(images), 200)])
    mean = z.mean(dim=(0, 2, 3))
    vae.quant_conv.bias[: mean.numel()] -= mean
    w = vae.post_quant_conv.weight[:, :, 0, 0]
    vae.post_quant_conv.bias += w @ mean
    std = (z - mean[None, :, None, None]).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return {"latent_channel_mean_removed": [round(v, 4) for v in mean.tolist()], "latent_std": round(std, 4),
            "scaling_factor": round(1.0 / std, 4)}


def _loss(vae, images, cfg, device, g):
    idx = np.sort(torch.randint(len(images), (cfg.batch_size,), generator=g).numpy())
    x = to_tensor(images[idx]).to(device)
    post = vae.encode(x).latent_dist
    y = vae.decode(post.sample(generator=g if x.device.type == "cpu" else None)).sample
    mse, l1 = F.mse_loss(y, x), F.l1_loss(y, x)
    return mse + 0.5 * l1 + KL_WEIGHT * post.kl().mean(), {"mse": mse.detach()}


def _finish(vae, run, run_dir, out_dir, held, extra) -> dict:
    p = psnr(reconstruct(vae, held), held)
    report = {"params": sum(t.numel() for t in vae.parameters()), "steps": run.step,
              "heldout_psnr_mean": round(float(p.mean()), 2), "heldout_psnr_min": round(float(p.min()), 2),
              "heldout_n": int(len(held)), "scaling_factor": round(vae.config.scaling_factor, 4), **extra}
    vae.to(torch.float16).save_pretrained(Path(out_dir), safe_serialization=True)
    (Path(run_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report


def train_vae(cache_dir: str | Path, run_dir: str | Path, out_dir: str | Path, cfg: TrainConfig = VAE_TRAIN,
              config: dict | None = None, resume: bool = True, eval_n: int = 1000) -> dict:
    from diffusers import AutoencoderKL

    train, heldout = RenderCache(Path(cache_dir) / "train"), RenderCache(Path(cache_dir) / "heldout")
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**(config or VAE_CONFIG))
    run = TrainRun(run_dir, cfg, vae, "vae", resume=resume)
    images = train.arrays["image"]
    probe = np.asarray(heldout.arrays["image"][:200])

    def loss_fn(step, g):
        return _loss(run.module, images, cfg, run.device, g)

    def probe_psnr(step):
        return {"heldout_psnr_200": float(psnr(reconstruct(run.final_module(), probe), probe).mean())}

    run.run(loss_fn, on_checkpoint=probe_psnr)
    vae = run.final_module().float().eval()
    stats = center_latents(vae, np.asarray(images[:2000]))
    return _finish(vae, run, run_dir, out_dir, np.asarray(heldout.arrays["image"][:eval_n]), stats)


"""Training the pixel classifiers g_t and g_multi from a few labelled world renders (the pixel-guidance
paper §3.2, supp. A.1; DatasetDDPM).

Each step takes labelled images, noises them to every guidance timestep (Eq. 6, fresh noise each
step) and to the multi timesteps (one noise for all of them), runs the frozen U-Net once over the
batch, and reads the decoder features at a random sample of pixels only (`features_at`): no pixel
feature map of the dataset is ever held whole. Every classifier takes one Adam step on its pixels
(lr 1e-3, as supp. A.1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...engine.ddim import alphas_cumprod, make_schedule
from ...engine.features import features_at, noise_and_features, pixel_features
from ...models.text import encode_prompts
from ...training.loop import TrainConfig, TrainRun
from ...world import SEG_CLASSES, render, resize_square, sample_record
from .model import PixelClassifiers

PIXEL_TRAIN = TrainConfig(steps=600, batch_size=1, lr=1e-3, min_lr_ratio=1.0, warmup=0, grad_clip=0.0,
                          checkpoint_every=100, log_every=20, seed=0)
LABELLED_SEED, HELDOUT_SEED = 11_000_000, 12_000_000  # world records of the labelled and held-out images


@dataclass(frozen=True)
class PixelSetup:
    """What the classifiers read (chosen by measurement: docs/models/toon-64.md, pixel classifiers)."""
    blocks: tuple[int, ...] = (0, 1, 2)  # toon-64's three decoder blocks (8x8 and 16x16 latents)
    max_timestep: int = 800  # g_t for every timestep of the 50-step grid up to here (t0 is at most 750)
    grid_steps: int = 50
    multi_timesteps: tuple[int, ...] = (50, 150, 250)  # g_multi's (the paper's)
    ensemble: int = 1  # supp. A.1: a single network each
    hidden: tuple[int, ...] = (128, 32)  # DatasetDDPM's widths for fewer than 30 classes
    pixels_per_image: int = 2048  # pixels each classifier sees of each image in a step
    # pixels drawn uniformly (0, as DatasetDDPM) or with probability (pixels of their class in the image) ** -balance,
    # so that small parts (glasses, mouth, brows: a few pixels at 64x64) are seen more often
    balance: float = 0.0


def labelled_images(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """n world renders and their true segmentation maps at the model's image size (N x S x S x 3, N x S x S)."""
    renders = [render(sample_record(seed + i)) for i in range(n)]
    return (np.stack([resize_square(r.image, size) for r in renders]),
            np.stack([resize_square(r.seg, size, nearest=True) for r in renders]).astype(np.int64))


def guidance_timesteps(scheduler_config: dict, setup: PixelSetup) -> tuple[int, ...]:
    ts = make_schedule(scheduler_config, setup.grid_steps).timesteps
    return tuple(sorted(t for t in ts if t <= setup.max_timestep))


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):  # DatasetDDPM's initialisation
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class FeatureReader:
    """Decoder features of noised latents at chosen pixels, from the frozen U-Net under the empty prompt."""

    def __init__(self, unet, text: torch.Tensor, blocks, alphas: torch.Tensor, image_size: int):
        self.unet, self.text, self.blocks, self.alphas, self.size = unet, text, list(blocks), alphas, image_size

    @torch.no_grad()
    def at(self, z0: torch.Tensor, timesteps, noise: torch.Tensor, rows=None, cols=None) -> torch.Tensor:
        """z0 (B latents) noised to each timestep with `noise` (B x ...), features at (rows, cols) (B x P) or at
        every pixel: len(timesteps) x B x P x D (P = H*W without pixels)."""
        k = len(timesteps)
        ts = torch.tensor(list(timesteps)).repeat_interleave(z0.shape[0])
        a = self.alphas[ts].to(z0.dtype).view(-1, 1, 1, 1)
        x = a.sqrt() * z0.repeat(k, 1, 1, 1) + (1 - a).sqrt() * noise.repeat(k, 1, 1, 1)  # Eq. 6
        _, store = noise_and_features(self.unet, self.blocks, x, ts, self.text)
        size = (self.size, self.size)
        if rows is None:
            f = pixel_features(store, size).flatten(2).transpose(1, 2)
        else:
            f = features_at(store, size, rows.repeat(k, 1), cols.repeat(k, 1))
        return f.view(k, z0.shape[0], *f.shape[1:])


def _reader(family_dir: Path, setup: PixelSetup, device) -> tuple[FeatureReader, object]:
    from ...models.backbone import load_backbone

    backbone = load_backbone(str(family_dir), device=device)
    text = encode_prompts(backbone.text_encoder, backbone.tokenizer, [""])
    return FeatureReader(backbone.unet, text, setup.blocks, alphas_cumprod(backbone.scheduler_config).float(),
                         backbone.image_size), backbone


def _latents(backbone, images: np.ndarray) -> torch.Tensor:
    from ...models.vae import encode_latents

    with torch.no_grad():
        return torch.cat([encode_latents(backbone.vae, images[i:i + 32]) for i in range(0, len(images), 32)])


def _iou(confusion: np.ndarray) -> dict:
    """Per-class IoU (classes present in the truth or the prediction) and their mean."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    per = {SEG_CLASSES[c] if c < len(SEG_CLASSES) else str(c): tp[c] / union[c] for c in range(len(tp)) if union[c]}
    return {"miou": float(np.mean(list(per.values()))), "per_class": {k: round(float(v), 4) for k, v in per.items()}}


@torch.no_grad()
def evaluate(model: PixelClassifiers, reader: FeatureReader, latents: torch.Tensor, segs: np.ndarray, seed: int = 0,
             timesteps=None, chunk: int = 8) -> dict:
    """Held-out IoU of g_multi and of g_t at `timesteps` (default: all of them), the noise seeded."""
    model.eval()
    n_cls = model.num_classes
    ts = list(model.config.timesteps if timesteps is None else timesteps)
    conf_multi = np.zeros((n_cls, n_cls), np.int64)
    conf_t = {t: np.zeros((n_cls, n_cls), np.int64) for t in ts}
    g = torch.Generator().manual_seed(seed)
    for i in range(0, len(latents), chunk):
        z = latents[i:i + chunk]
        noise = torch.randn(z.shape, generator=g)
        truth = torch.from_numpy(segs[i:i + chunk]).flatten()
        f = reader.at(z, model.config.multi_timesteps, noise)  # M x B x HW x D
        pred = model.g_multi(torch.cat(list(f), dim=-1).flatten(0, 1)).argmax(-1)
        conf_multi += np.bincount((truth * n_cls + pred).numpy(), minlength=n_cls**2).reshape(n_cls, n_cls)
        for t in ts:
            f = reader.at(z, [t], noise)[0].flatten(0, 1)
            pred = model.g_t(t, f).argmax(-1)
            conf_t[t] += np.bincount((truth * n_cls + pred).numpy(), minlength=n_cls**2).reshape(n_cls, n_cls)
    return {"g_multi": _iou(conf_multi), "g_t": {int(t): round(_iou(c)["miou"], 4) for t, c in conf_t.items()},
            "g_t_per_class": {int(t): _iou(c)["per_class"] for t, c in conf_t.items()}}


def sample_pixels(segs: torch.Tensor, n: int, balance: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n pixel positions (rows, cols: B x n) of each map in segs (B x H x W): uniform, or each pixel weighted by
    its class's pixel count in its map to the power -balance."""
    b, h, w = segs.shape
    if balance == 0:
        return torch.randint(h, (b, n), generator=g), torch.randint(w, (b, n), generator=g)
    flat = segs.flatten(1)
    counts = torch.stack([torch.bincount(f, minlength=int(segs.max()) + 1)[f] for f in flat]).double()
    idx = torch.multinomial(counts ** -balance, n, replacement=True, generator=g)
    return idx // w, idx % w


def train_pixel_classifiers(family_dir: str | Path, run_dir: str | Path, out_dir: str | Path | None,
                            labelled: int = 30, heldout: int = 100, cfg: TrainConfig = PIXEL_TRAIN,
                            setup: PixelSetup = PixelSetup(), resume: bool = True) -> dict:
    """Train g_t and g_multi on `labelled` renders (seeded), report held-out IoU on `heldout` others, and save
    the classifiers (fp16 safetensors) to `out_dir` (None: report only)."""
    run_dir = Path(run_dir)
    reader, backbone = _reader(Path(family_dir), setup, "cpu")
    images, segs = labelled_images(labelled, LABELLED_SEED + 1000 * cfg.seed, backbone.image_size)
    latents = _latents(backbone, images)
    timesteps = guidance_timesteps(backbone.scheduler_config, setup)
    feature_dim = sum(backbone.unet.up_blocks[i].resnets[-1].out_channels for i in setup.blocks)
    torch.manual_seed(cfg.seed)
    model = PixelClassifiers(classes=SEG_CLASSES, blocks=setup.blocks, feature_dim=feature_dim, timesteps=timesteps,
                             multi_timesteps=setup.multi_timesteps, ensemble=setup.ensemble, hidden=setup.hidden,
                             prompt="", image_size=backbone.image_size)
    model.apply(_init)
    run = TrainRun(run_dir, cfg, model, "pixel classifiers", resume=resume)
    p = setup.pixels_per_image
    segs_t = torch.from_numpy(segs)

    def loss_fn(step, g):
        idx = torch.randint(len(latents), (cfg.batch_size,), generator=g)
        z = latents[idx]
        rows, cols = sample_pixels(segs_t[idx], p, setup.balance, g)
        labels = segs_t[idx[:, None], rows, cols].flatten()
        noise_t, noise_multi = (torch.randn(z.shape, generator=g) for _ in range(2))
        f_t = reader.at(z, timesteps, noise_t, rows, cols)  # K x B x P x D
        net = run.module
        loss_t = torch.stack([F.cross_entropy(net.per_timestep[k](f_t[k].flatten(0, 1)), labels)
                              for k in range(len(timesteps))]).mean()
        f_m = torch.cat(list(reader.at(z, setup.multi_timesteps, noise_multi, rows, cols)), dim=-1).flatten(0, 1)
        loss_multi = torch.stack([F.cross_entropy(m(f_m), labels) for m in net.multi]).mean()
        return loss_t + loss_multi, {"loss_t": loss_t.detach(), "loss_multi": loss_multi.detach()}

    t0 = time.perf_counter()
    run.run(loss_fn)
    seconds = time.perf_counter() - t0
    model = run.final_module().float().eval()
    held_images, held_segs = labelled_images(heldout, HELDOUT_SEED, backbone.image_size)
    report = {"labelled": labelled, "heldout": heldout, "steps": run.step, "seed": cfg.seed,
              "train_seconds_this_run": round(seconds, 1), "setup": setup.__dict__,
              "params": sum(q.numel() for q in model.parameters()),
              **evaluate(model, reader, _latents(backbone, held_images), held_segs)}
    if out_dir is not None:
        model.to(torch.float16).save_pretrained(Path(out_dir), safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report

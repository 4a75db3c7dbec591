"""Training the toon-64 text-conditional U-Net on VAE latents of world renders and diptychs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import PairCache, RenderCache
from .toon64 import SCHEDULER_CONFIG, UNET_CONFIG
from .train_clip import training_caption
from .train_vae import to_tensor
from .training import TrainConfig, TrainRun

UNET_TRAIN = TrainConfig(steps=3000, batch_size=32, lr=6e-4, warmup=200, ema_decay=0.999, checkpoint_every=250,
                         seed=0)
CAPTION_DROPOUT = 0.1  # empty caption, for classifier-free guidance
DIPTYCH_EVERY = 8  # one diptych batch (64 x 128, 2.5x the cost of a single one) in this many steps
MIN_SNR_GAMMA = 5.0  # min-SNR loss weighting (Hang et al. 2023): faster convergence from scratch
# The face: about 12% of a portrait's pixels, 2% for eyes, brows and mouth together, so a plain MSE spends
# most of its gradient on hair, clothes and background. `face_loss_weight` lambda weights each latent
# pixel by 1 + lambda * (its fraction of these classes) (0 = plain MSE, the from-scratch recipe).
FACE_LOSS_CLASSES = ("skin", "eyes", "brows", "mouth", "glasses", "beard", "tears", "nose")


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, batch: int = 250) -> torch.Tensor:
    """Scaled latents (posterior means) of uint8 images, on the VAE's device; returned on the CPU."""
    vae.eval()
    out = [(vae.encode(to_tensor(images[i:i + batch]).to(vae.device)).latent_dist.mode()
            * vae.config.scaling_factor).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


def weights_tag(folder: Path) -> str:
    """A short hash of a model folder's safetensors (names caches derived from those weights)."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def latents_path(cache_dir, name: str, vae_dir: Path) -> Path:
    """Where the latents of a render cache live, keyed by the VAE weights (a retrained VAE gets fresh ones)."""
    return Path(cache_dir) / "latents" / f"{name}_{weights_tag(vae_dir)}.safetensors"


def latents_cache(cache_dir, name: str, images: np.ndarray, vae_dir: Path, device="cpu") -> torch.Tensor:
    """The scaled latents of render cache `name` (on the CPU): read from `latents_path`, or encoded
    once by the VAE in `vae_dir` on `device` (the training device) and written there."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    path = latents_path(cache_dir, name, vae_dir)
    if path.exists():
        z = load_file(path)["latents"]
        if len(z) == len(images):
            return z
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32).to(device)
    z = encode_latents(vae, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": z.contiguous()}, path)
    return z


def load_text_encoder(folder: str | Path):
    """The text tower in `folder`: a text_encoder/ folder, or a CLIP folder (its text half; the
    family keeps CLIP's text tower as its text encoder, so a retrained CLIP can condition a U-Net)."""
    from transformers import CLIPTextModel

    return CLIPTextModel.from_pretrained(folder, torch_dtype=torch.float32).eval()


@torch.no_grad()
def encode_text(text_encoder, tokenizer, texts, device) -> torch.Tensor:
    """Last hidden states padded to 77 tokens, as the Stable Diffusion pipelines compute them."""
    ids = tokenizer(list(texts), padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(device))[0]


def noised(x0: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator):
    """(x_t, noise, t) for random timesteps: the forward process q(x_t | x_0)."""
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    t = torch.randint(0, len(alphas_cumprod), (len(x0),), generator=g).to(x0.device)
    a = alphas_cumprod.to(x0.device)[t][:, None, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, noise, t


def face_loss_weights(seg: np.ndarray, latent_size: int, face_loss_weight: float) -> torch.Tensor:
    """(n, 1, h, w) per-latent-pixel weights 1 + lambda * (fraction of the pixel's image block in
    FACE_LOSS_CLASSES), from segmentation maps (n, H, W)."""
    from ..world.render import SEG_CLASSES

    face = np.isin(seg, [SEG_CLASSES.index(c) for c in FACE_LOSS_CLASSES])
    fraction = F.adaptive_avg_pool2d(torch.from_numpy(face).float()[:, None], latent_size)
    return 1 + face_loss_weight * fraction


def diffusion_loss(pred: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                   pixel_weights: torch.Tensor | None = None):
    """Epsilon MSE with min-SNR weights min(SNR, gamma) / SNR; with `pixel_weights` (n, 1, h, w) each
    image's MSE is their weighted mean over latent pixels (so the weights move the gradient within an
    image, not the loss scale)."""
    a = alphas_cumprod.to(t.device)[t]
    snr = a / (1 - a)
    w = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
    mse = F.mse_loss(pred, noise, reduction="none").mean(dim=1, keepdim=True)
    if pixel_weights is None:
        per_image = mse.mean(dim=(1, 2, 3))
    else:
        pixel_weights = pixel_weights.to(mse.device)
        per_image = (mse * pixel_weights).sum(dim=(1, 2, 3)) / pixel_weights.sum(dim=(1, 2, 3))
    return (per_image * w).mean()


def train_unet(cache_dir: str | Path, family_dir: str | Path, run_dir: str | Path, out_dir: str | Path,
               cfg: TrainConfig = UNET_TRAIN, config: dict | None = None, resume: bool = True,
               init_from: str | Path | None = None, text_encoder_dir: str | Path | None = None,
               face_loss_weight: float = 0.0) -> dict:
    """Train the U-Net from scratch, or go on from the weights in `init_from` (a fresh optimizer),
    conditioned on the family's text encoder or the one in `text_encoder_dir` (`load_text_encoder`);
    `face_loss_weight` > 0 weights the loss of single portraits towards the face (`face_loss_weights`;
    diptychs keep the plain loss)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    family_dir, run_dir = Path(family_dir), Path(run_dir)
    tokenizer = CLIPTokenizer.from_pretrained(family_dir / "tokenizer")
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
        cond = encode_text(text_encoder, tokenizer, texts, run.device)
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


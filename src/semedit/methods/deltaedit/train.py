"""Training DeltaEdit's parts on the toon world.

The style generator and its encoder (`semedit train style-generator`): the paper uses a pretrained StyleGAN2 and
e4e. Trained adversarially as StyleGAN2 is, a generator of this size needs far more steps than this CPU gives in a
few hours (docs/deltaedit.md has the measurement), so semedit trains synthesis and encoder together as an
autoencoder through the style bottleneck: world render -> encoder -> W+ -> affines -> S -> synthesis -> the render
again, with a pixel loss, a feature loss (toon-64's CLIP image tokens, in the role of e4e's LPIPS and identity
losses) and e4e's regulariser on the per-layer offsets (which keeps W+ near one w, so that S stays a style space).
The mapping network z -> w is then fitted to the encoder's w (a small GAN in W), which gives the generator's own
samples for the Delta Mapper's training set (§5.1).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from ...engine.conditioning import decode_latents
from ...engine.ddim import alphas_cumprod, make_schedule
from ...models.backbone import load_backbone
from ...models.images import to_tensor
from ...models.text import image_features
from ...models.vae import encode_latents
from ...training.data import RenderCache
from ...training.diffusion import noised
from ...training.loop import TrainConfig, TrainRun
from ...training.vae import heldout_psnr
from .diffusion import StyleDiffusion, StyleTokens, invert_and_decode
from .generator import LEVELS, StyleEncoder, StyleGenerator, inverted, level_of, load_style_generator
from .mapper import DeltaMapper, delta_condition
from .mapper import loss as mapper_loss

STYLE_TRAIN = TrainConfig(steps=8000, batch_size=32, lr=1e-3, warmup=200, weight_decay=0.0, grad_clip=1.0,
                          checkpoint_every=250, log_every=25, seed=0)
MAPPING_TRAIN = TrainConfig(steps=3000, batch_size=256, lr=0.1, min_lr_ratio=1.0, warmup=0, weight_decay=0.0,
                            grad_clip=0.0, checkpoint_every=500, log_every=50, seed=0)
STYLE_RENDERS, STYLE_HELDOUT = 20_000, 500
STYLE_RENDER_SEED, STYLE_HELDOUT_SEED = 24_000_000, 25_000_000
FEATURE_WEIGHT = 1.0  # CLIP image-token MSE against the pixel MSE
OFFSET_WEIGHT = 2e-4  # e4e's delta regularisation: the L2 norm of each layer's offset from w_0
R1_WEIGHT = 1.0  # the W-space critic's gradient penalty on encoder w's


class StyleAutoencoder(nn.Module):
    def __init__(self, generator: StyleGenerator, encoder: StyleEncoder):
        super().__init__()
        self.generator, self.encoder = generator, encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_plus = self.encoder(images)
        return self.generator(w_plus), w_plus


class MappingGAN(nn.Module):
    """The generator's mapping network and a critic in W (the critic is discarded after training)."""

    def __init__(self, mapping: nn.Module, w_dim: int, hidden: int = 256):
        super().__init__()
        self.mapping = mapping
        self.critic = nn.Sequential(nn.Linear(w_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                    nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


def clip_tokens(clip, images: torch.Tensor) -> torch.Tensor:
    """toon-64's CLIP vision tokens of images in [-1, 1] (its preprocessing is exactly that range at 64 px)."""
    return clip.vision_model(pixel_values=images).last_hidden_state


def style_renders(folder: Path, n: int, seed: int) -> RenderCache:
    return RenderCache.build(folder, n, seed=seed, workers=1 if n < 1000 else None)


@torch.no_grad()
def encode_all(encoder: StyleEncoder, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    return torch.cat([encoder(to_tensor(images[i:i + batch])) for i in range(0, len(images), batch)])


def mean_se(values) -> list[float]:
    return [float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))]


def train_style_generator(run_dir: str | Path, out_dir: str | Path | None, cfg: TrainConfig = STYLE_TRAIN,
                          mapping_cfg: TrainConfig = MAPPING_TRAIN, renders: int = STYLE_RENDERS,
                          heldout: int = STYLE_HELDOUT, resume: bool = True, generator_config: dict | None = None,
                          encoder_config: dict | None = None) -> dict:
    """Train the style generator and encoder on world renders (then the mapping network), report the inversion
    quality and the split of S, and save both (fp16 safetensors) under `out_dir` (generator/, encoder/)."""
    run_dir = Path(run_dir)
    backbone = load_backbone("toon-64", device="cpu")
    clip = backbone.clip.requires_grad_(False)
    train_set = style_renders(run_dir / "renders", renders, STYLE_RENDER_SEED)
    images = train_set.arrays["image"]
    torch.manual_seed(cfg.seed)
    generator = StyleGenerator(**(generator_config or {}))
    encoder = StyleEncoder(**{"w_dim": generator.config.w_dim, "resolution": generator.config.resolution,
                              "layer_resolutions": tuple(generator.layer_resolutions), **(encoder_config or {})})
    run = TrainRun(run_dir / "autoencoder", cfg, StyleAutoencoder(generator, encoder), "style autoencoder",
                   resume=resume)

    def autoencoder_loss(step, g):
        x = to_tensor(images[np.sort(torch.randint(len(images), (cfg.batch_size,), generator=g).numpy())])
        y, w_plus = run.module(x)
        pixel = F.mse_loss(y, x)
        feature = F.mse_loss(clip_tokens(clip, y), clip_tokens(clip, x))
        offsets = (w_plus[:, 1:] - w_plus[:, :1]).norm(dim=-1).mean()
        return pixel + FEATURE_WEIGHT * feature + OFFSET_WEIGHT * offsets, {
            "pixel": pixel.detach(), "feature": feature.detach(), "offsets": offsets.detach()}

    t0 = time.perf_counter()
    run.run(autoencoder_loss)
    autoencoder = run.final_module().eval()
    generator, encoder = autoencoder.generator, autoencoder.encoder
    seconds = {"autoencoder": round(time.perf_counter() - t0, 1)}

    # The mapping network: z -> w distributed as the encoder's w_0 of the renders.
    real_w = encode_all(encoder, images)[:, 0]
    gan = MappingGAN(generator.mapping.requires_grad_(True), generator.config.w_dim)
    mrun = TrainRun(run_dir / "mapping", mapping_cfg, gan, "mapping", resume=resume)
    z_dim = generator.config.z_dim

    def mapping_loss(step, g):
        m, critic_step = mrun.module, step % 2 == 0  # alternate: the critic's step, then the mapping's
        m.mapping.requires_grad_(not critic_step)
        m.critic.requires_grad_(critic_step)
        fake = generator.map(torch.randn(mapping_cfg.batch_size, z_dim, generator=g))
        if not critic_step:
            return F.softplus(-m.critic(fake)).mean(), {}
        real = real_w[torch.randint(len(real_w), (mapping_cfg.batch_size,), generator=g)].requires_grad_(True)
        real_score = m.critic(real)
        grad, = torch.autograd.grad(real_score.sum(), real, create_graph=True)  # R1
        return (F.softplus(m.critic(fake)).mean() + F.softplus(-real_score).mean()
                + R1_WEIGHT / 2 * grad.square().sum(1).mean()), {}

    t0 = time.perf_counter()
    mrun.run(mapping_loss)
    seconds["mapping"] = round(time.perf_counter() - t0, 1)
    generator.requires_grad_(False)
    with torch.no_grad():
        g = torch.Generator().manual_seed(cfg.seed)
        generator.w_avg.copy_(generator.map(torch.randn(10_000, z_dim, generator=g)).mean(0))
        sampled = generator.map(torch.randn(len(real_w), z_dim, generator=g))

    renders = np.asarray(style_renders(run_dir / "heldout", heldout, STYLE_HELDOUT_SEED).arrays["image"])
    psnrs = heldout_psnr(inverted(generator, encoder, renders), renders)
    levels = {k: [v.start, v.stop] for k, v in generator.level_slices().items()}
    report = {"autoencoder_steps": run.step, "mapping_steps": mrun.step, "seed": cfg.seed,
              "batch_size": cfg.batch_size, "lr": cfg.lr, "renders": len(train_set),
              "train_seconds_this_run": seconds, "style_dim": generator.style_dim, "style_levels": levels,
              "num_ws": generator.num_ws,
              "params": {"generator": sum(p.numel() for p in generator.parameters()),
                         "encoder": sum(p.numel() for p in encoder.parameters())},
              "heldout": len(renders), "heldout_psnr": mean_se(psnrs),
              "w_mean_gap": float((sampled.mean(0) - real_w.mean(0)).norm()),
              "w_std_ratio": float(sampled.std(0).mean() / real_w.std(0).mean())}
    if out_dir is not None:
        for name, part in (("generator", generator), ("encoder", encoder)):
            copy.deepcopy(part).half().save_pretrained(Path(out_dir) / name, safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


# The Delta Mapper (§3.2, §5.1): Adam at a constant 0.5 on layers with lr_mul 0.01 (the official code), batch 64,
# Eq. 6. The paper trains on 58,000 real and 200,000 generated images for about 200,000 steps; the toon world's
# style space is much smaller.
MAPPER_TRAIN = TrainConfig(steps=10_000, batch_size=64, lr=0.5, min_lr_ratio=1.0, warmup=0, weight_decay=0.0,
                           grad_clip=0.0, checkpoint_every=1000, log_every=100, seed=0)
MAPPER_RENDERS, MAPPER_SAMPLES, MAPPER_HELDOUT = 20_000, 20_000, 1_000
# The mapping network is a small GAN fitted in minutes, and its samples spread wider than the renders' codes
# (report: w_std_ratio); StyleGAN's truncation trick (psi 0.5) draws them from the well-covered middle.
SAMPLE_TRUNCATION = 0.5
MAPPER_RENDER_SEED, MAPPER_SAMPLE_SEED, MAPPER_HELDOUT_SEED = 26_000_000, 27_000_000, 28_000_000


@torch.no_grad()
def style_codes(generator: StyleGenerator, encoder: StyleEncoder, clip, images: np.ndarray | None = None,
                samples: int = 0, seed: int = 0, batch: int = 250) -> dict[str, torch.Tensor]:
    """s, W+ and the unit-norm CLIP image embedding of world renders (inverted by the encoder, the CLIP embedding of
    the render itself) or of the generator's own samples (z -> w; the CLIP embedding of the sample)."""
    out = {"s": [], "w_plus": [], "clip": []}
    g = torch.Generator().manual_seed(seed)
    count = len(images) if images is not None else samples
    for i in range(0, count, batch):
        if images is not None:
            x = to_tensor(images[i:i + batch])
            w_plus = encoder(x)
        else:
            w_plus = generator.w_plus(generator.map(torch.randn(min(batch, count - i), generator.config.z_dim,
                                                                generator=g), truncation=SAMPLE_TRUNCATION))
            x = generator(w_plus).clamp(-1, 1)
        out["s"].append(generator.styles(w_plus))
        out["w_plus"].append(w_plus)
        out["clip"].append(image_features(clip, x))
    return {k: torch.cat(v) for k, v in out.items()}


def mapper_levels(generator: StyleGenerator, space: str) -> tuple[int, int, int]:
    """The sizes of the coarse, medium and fine parts of the mapped code: of S, or of W+ (its vectors grouped by
    the resolution of the convolution each feeds first)."""
    if space == "s":
        return tuple(generator.level_slices()[level].stop - generator.level_slices()[level].start for level in LEVELS)
    res = generator.layer_resolutions
    per_w = [level_of(res[min(k, len(res) - 1)]) for k in range(generator.num_ws)]
    return tuple(per_w.count(level) * generator.config.w_dim for level in LEVELS)


def train_delta_mapper(run_dir: str | Path, out_dir: str | Path | None, style_folder: str | Path,
                       cfg: TrainConfig = MAPPER_TRAIN, renders: int = MAPPER_RENDERS, samples: int = MAPPER_SAMPLES,
                       heldout: int = MAPPER_HELDOUT, space: str = "s", resume: bool = True) -> dict:
    """Train the Delta Mapper text-free (§3.2): pairs (i, j) of training images, Δŝ = mapper(s_i, [c_i,
    normalize(c_j - c_i)]) against Δs = s_j - s_i (or in W+, `space="w+"`); report Eq. 6's terms on held-out pairs
    and save it (fp16 safetensors) to `out_dir`."""
    if space not in ("s", "w+"):
        raise ValueError(f"space must be s or w+, got {space!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone("toon-64", device="cpu")
    generator, encoder = load_style_generator(style_folder)
    codes_file = run_dir / "codes.pt"
    if codes_file.exists():
        data = torch.load(codes_file, weights_only=True)
    else:
        images = style_renders(run_dir / "renders", renders, MAPPER_RENDER_SEED).arrays["image"]
        parts = [style_codes(generator, encoder, backbone.clip, np.asarray(images))]
        if samples:
            parts.append(style_codes(generator, encoder, backbone.clip, samples=samples, seed=MAPPER_SAMPLE_SEED))
        held = style_codes(generator, encoder, backbone.clip,
                           np.asarray(style_renders(run_dir / "heldout", heldout, MAPPER_HELDOUT_SEED).arrays["image"]))
        data = {"train": {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, "heldout": held}
        torch.save(data, codes_file.with_suffix(".tmp"))
        codes_file.with_suffix(".tmp").replace(codes_file)
    key = "s" if space == "s" else "w_plus"
    train, held = data["train"], data["heldout"]
    code = train[key].flatten(1)
    torch.manual_seed(cfg.seed)
    mapper = DeltaMapper(level_dims=mapper_levels(generator, space), clip_dim=train["clip"].shape[1], space=space)
    run = TrainRun(run_dir, cfg, mapper, "Delta Mapper", resume=resume)

    def pairs(g, n, source):
        i, j = torch.randint(len(source["clip"]), (2, n), generator=g)
        c = source["clip"]
        x = source[key].flatten(1)
        return x[i], delta_condition(c[i], c[j] - c[i]), x[j] - x[i]

    def loss_fn(step, g):
        s_i, condition, delta = pairs(g, cfg.batch_size, {"clip": train["clip"], key: code})
        return mapper_loss(run.module(s_i, condition), delta), {}

    t0 = time.perf_counter()
    run.run(loss_fn)
    seconds = round(time.perf_counter() - t0, 1)
    trained = run.final_module().eval()
    with torch.no_grad():
        s_i, condition, delta = pairs(torch.Generator().manual_seed(1), 2000, held)
        pred = trained(s_i, condition)
        cos = F.cosine_similarity(pred, delta, dim=-1)
    report = {"steps": run.step, "seed": cfg.seed, "batch_size": cfg.batch_size, "lr": cfg.lr, "space": space,
              "level_dims": list(mapper.config.level_dims), "train_codes": len(code), "renders": renders,
              "samples": samples, "train_seconds_this_run": seconds,
              "params": sum(p.numel() for p in trained.parameters()),
              "heldout_pairs": 2000, "heldout_mse": float(F.mse_loss(pred, delta)),
              "heldout_cos": [float(cos.mean()), float(cos.std() / np.sqrt(len(cos)))],
              "delta_norm": float(delta.norm(dim=-1).mean()), "pred_norm": float(pred.norm(dim=-1).mean())}
    if out_dir is not None:
        copy.deepcopy(trained).half().save_pretrained(Path(out_dir), safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


# DeltaEdit-D's style-conditioned diffusion (§4.2.2): AdamW at 1e-4 with weight decay 0.01 (§5.1, after DiffAE),
# Eq. 14's L1 noise loss; from toon-64's U-Net, whose text tokens the style tokens replace.
DIFFUSION_TRAIN = TrainConfig(steps=3000, batch_size=16, lr=1e-4, warmup=100, weight_decay=1e-2, grad_clip=1.0,
                              checkpoint_every=250, log_every=25, seed=0)
DIFFUSION_RENDERS, DIFFUSION_HELDOUT = 20_000, 16
DIFFUSION_RENDER_SEED, DIFFUSION_HELDOUT_SEED = 30_000_000, 31_000_000


def train_style_diffusion(run_dir: str | Path, out_dir: str | Path | None, style_folder: str | Path,
                          cfg: TrainConfig = DIFFUSION_TRAIN, renders: int = DIFFUSION_RENDERS,
                          heldout: int = DIFFUSION_HELDOUT, hierarchical: bool = True, tokens_per_level: int = 4,
                          pretrained: bool = True, inversion_steps: int = 50, resume: bool = True) -> dict:
    """Train the style-conditioned diffusion on world renders' latents under their styles s (inverted by the style
    encoder, as the paper's by e4e), report the PSNR of DDIM inversion and reconstruction under s on held-out
    renders (Table 3), and save it (fp16) to `out_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone("toon-64", device="cpu")
    generator, encoder = load_style_generator(style_folder)

    @torch.no_grad()
    def codes(images):
        z, s = [], []
        for i in range(0, len(images), 250):
            z.append(encode_latents(backbone.vae, images[i:i + 250]))
            s.append(generator.styles(encoder(to_tensor(images[i:i + 250]))))
        return torch.cat(z), torch.cat(s)

    codes_file = run_dir / "codes.pt"
    if codes_file.exists():
        z0, s = torch.load(codes_file, weights_only=True).values()
    else:
        z0, s = codes(np.asarray(style_renders(run_dir / "renders", renders, DIFFUSION_RENDER_SEED).arrays["image"]))
        torch.save({"z0": z0, "s": s}, codes_file.with_suffix(".tmp"))
        codes_file.with_suffix(".tmp").replace(codes_file)
    alphas = alphas_cumprod(backbone.scheduler_config).float()
    torch.manual_seed(cfg.seed)
    unet = copy.deepcopy(backbone.unet) if pretrained else UNet2DConditionModel.from_config(backbone.unet.config)
    tokens = StyleTokens(level_dims=mapper_levels(generator, "s"), tokens_per_level=tokens_per_level,
                         cross_attention_dim=unet.config.cross_attention_dim, hierarchical=hierarchical)
    model = StyleDiffusion(unet.float().requires_grad_(True), tokens)
    run = TrainRun(run_dir, cfg, model, "style diffusion", resume=resume)

    def loss_fn(step, g):
        idx = torch.randint(len(z0), (cfg.batch_size,), generator=g)
        x_t, noise, t = noised(z0[idx], alphas, g)
        return F.l1_loss(run.module(x_t, t, s[idx]), noise), {}

    t0 = time.perf_counter()
    run.run(loss_fn)
    seconds = round(time.perf_counter() - t0, 1)
    trained = run.final_module().eval()
    images = np.asarray(style_renders(run_dir / "heldout", heldout, DIFFUSION_HELDOUT_SEED).arrays["image"])
    held_z, held_s = codes(images)
    with torch.no_grad():
        _, z_rec = invert_and_decode(trained, held_z, held_s, held_s, make_schedule(backbone.scheduler_config,
                                                                                     inversion_steps))
    psnrs = heldout_psnr(decode_latents(backbone, z_rec), images)
    vae_only = heldout_psnr(decode_latents(backbone, held_z), images)
    report = {"steps": run.step, "seed": cfg.seed, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "hierarchical": hierarchical, "tokens_per_level": tokens_per_level, "pretrained": pretrained,
              "renders": renders, "train_seconds_this_run": seconds,
              "params": sum(p.numel() for p in trained.parameters()), "heldout": len(images),
              "inversion_steps": inversion_steps, "reconstruction_psnr": mean_se(psnrs),
              "vae_psnr": mean_se(vae_only)}
    if out_dir is not None:
        trained.save_pretrained(Path(out_dir))
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report

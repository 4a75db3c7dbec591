"""Conditions and the U-Net call: text embeddings, ControlNet layout inputs, VAE encode/decode, and
noise prediction for several guidance branches in one U-Net batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.train_vae import to_tensor, to_uint8


@dataclass
class Condition:
    """One guidance branch: text embeddings (1, L, D) and ControlNet inputs {name: (map, scale)},
    maps as (1, 3, H, W) floats in [0, 1]. A ControlNet with scale 0 is left out."""
    text: torch.Tensor
    controls: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)


@torch.no_grad()
def encode_text(backbone, texts: list[str]) -> torch.Tensor:
    """Last hidden states padded to the tokenizer's length (77), as the SD pipelines compute them."""
    tok = backbone.tokenizer(list(texts), padding="max_length", max_length=backbone.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
    return backbone.text_encoder(tok.input_ids.to(backbone.device))[0]


def encode_image(backbone, images: np.ndarray) -> torch.Tensor:
    """Scaled VAE latents (posterior mean) of uint8 images."""
    a = np.asarray(images)
    x = to_tensor(a[None] if a.ndim == 3 else a).to(backbone.device, backbone.dtype)
    return backbone.vae.encode(x).latent_dist.mode() * backbone.vae.config.scaling_factor


def decode_latents(backbone, z: torch.Tensor) -> np.ndarray:
    return to_uint8(backbone.vae.decode(z / backbone.vae.config.scaling_factor).sample)


def control_map(backbone, layout: np.ndarray) -> torch.Tensor:
    """A uint8 layout map (HxWx3 drawing or HxW scribble) as a ControlNet input (1, 3, H, W) in
    [0, 1], converted exactly as the ControlNets were trained (models.train_controlnet)."""
    from ..models.train_controlnet import control_tensor

    a = np.asarray(layout)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"a layout map must be uint8 HxWx3 or HxW, got {a.dtype} {a.shape}")
    return control_tensor(a[None]).to(backbone.device, backbone.dtype)


def predict_noise(backbone, x: torch.Tensor | list[torch.Tensor], t: int,
                  conditions: list[Condition]) -> list[torch.Tensor]:
    """eps(x, t, c) for every condition, all branches through the U-Net as one batch (ControlNet
    residuals summed over the ControlNets a branch uses, as diffusers' MultiControlNet does).
    `x` is one latent batch for all branches, or a list of each branch's own (equal-sized) batch,
    so that separate sampling runs can share U-Net calls."""
    n = len(conditions)
    xs = list(x) if isinstance(x, (list, tuple)) else [x] * n
    if len(xs) != n or len({tuple(v.shape) for v in xs}) != 1:
        raise ValueError(f"need one latent batch of one shape per condition: {len(xs)} for {n} conditions")
    b = xs[0].shape[0]
    xb = torch.cat(xs)
    text = torch.cat([c.text.expand(b, -1, -1) for c in conditions])
    tt = torch.full((n * b,), int(t), device=xb.device, dtype=torch.long)
    down = mid = None
    for name in sorted({k for c in conditions for k in c.controls}):
        net = backbone.controlnets[name]
        blank = torch.zeros_like(next(c.controls[name][0] for c in conditions if name in c.controls))
        maps, scales = [], []
        for c in conditions:
            m, s = c.controls.get(name, (blank, 0.0))  # a branch without this ControlNet: scale 0
            maps.append(m)
            scales.append(float(s))
        cond = torch.cat([m.expand(b, -1, -1, -1) for m in maps])
        scale = torch.tensor(scales, device=xb.device, dtype=xb.dtype).repeat_interleave(b).view(-1, 1, 1, 1)
        d, m_ = net(xb, tt, encoder_hidden_states=text, controlnet_cond=cond.to(xb.device, xb.dtype), return_dict=False)
        d = [r * scale for r in d]
        m_ = m_ * scale
        down = d if down is None else [a + r for a, r in zip(down, d)]
        mid = m_ if mid is None else mid + m_
    eps = backbone.unet(xb, tt, encoder_hidden_states=text, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample
    return list(eps.chunk(n))


class GuidedNoise:
    """eps(x, t) with classifier-free guidance between a null and a conditioned branch (scale 1:
    the conditioned branch alone, one U-Net evaluation), counting U-Net evaluations."""

    def __init__(self, backbone, null: Condition, cond: Condition, scale: float):
        from .guidance import nested_guidance

        self.backbone, self.scale, self.calls = backbone, float(scale), 0
        self.branches = [cond] if self.scale == 1 else [null, cond]
        self._combine = (lambda p: p[0]) if self.scale == 1 else (lambda p: nested_guidance(p, [self.scale]))

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.calls += len(self.branches) * x.shape[0]
        return self._combine(predict_noise(self.backbone, x, t, self.branches))

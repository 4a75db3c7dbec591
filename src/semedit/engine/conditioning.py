"""Conditions and the U-Net call: text embeddings, ControlNet layout inputs, VAE encode/decode, the
condition pair of an edit, and noise prediction for several guidance branches in one U-Net batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models import vae as vae_io
from ..models.images import control_tensor
from ..models.text import encode_prompts, encode_prompts_with_words


@dataclass
class Condition:
    """One guidance branch: text embeddings (1, L, D) and ControlNet inputs {name: (map, scale)},
    maps as (1, 3, H, W) floats in [0, 1]. A ControlNet with scale 0 is left out."""
    text: torch.Tensor
    controls: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EditConditions:
    """The original condition C_0 and the edit condition C_EDIT (ITO §3.2; DiffEdit's source and target
    prompts), each with the null branch of its classifier-free guidance. Without `own_edit_null` (the
    layouts agree) C_0's null branch serves both and is evaluated once."""
    source: Condition
    edit: Condition
    source_null: Condition
    own_edit_null: Condition | None = None

    @property
    def edit_null(self) -> Condition:
        return self.source_null if self.own_edit_null is None else self.own_edit_null

    def branches(self, guided: bool) -> list[Condition]:
        """The distinct branches to evaluate, in U-Net batch order: [C_0, C_EDIT], or with guidance
        [null_0, C_0, (null_EDIT,) C_EDIT]."""
        if not guided:
            return [self.source, self.edit]
        return [self.source_null, self.source, *([] if self.own_edit_null is None else [self.own_edit_null]),
                self.edit]


def encode_text(backbone, texts: list[str]) -> torch.Tensor:
    """Prompt embeddings (N, L, D) padded to the tokenizer's length, as the SD pipelines compute them."""
    return encode_prompts(backbone.text_encoder, backbone.tokenizer, texts)


def encode_text_with_words(backbone, texts: list[str], before: str, words: torch.Tensor) -> torch.Tensor:
    """`encode_text` with new word embeddings (N or 1, K, D) put before the word `before` of each text (the MCDM
    pair generator's identity words c_id, supp. §1.1); differentiable in `words`."""
    return encode_prompts_with_words(backbone.text_encoder, backbone.tokenizer, texts, before, words)


@torch.no_grad()
def encode_image(backbone, images: np.ndarray) -> torch.Tensor:
    """Scaled VAE latents (posterior mean) of uint8 images (HxWx3 or NxHxWx3)."""
    a = np.asarray(images)
    return vae_io.encode_latents(backbone.vae, a[None] if a.ndim == 3 else a)


def decode_latents(backbone, z: torch.Tensor) -> np.ndarray:
    """uint8 NxHxWx3 images of scaled latents."""
    return vae_io.decode_latents(backbone.vae, z)


def control_map(backbone, layout: np.ndarray) -> torch.Tensor:
    """A uint8 layout map (HxWx3 drawing or HxW scribble) as a ControlNet input (1, 3, H, W) in
    [0, 1], converted exactly as the ControlNets were trained."""
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
    the conditioned branch alone, one U-Net evaluation): guidance as a wrapper around the model."""

    def __init__(self, backbone, null: Condition, cond: Condition, scale: float):
        from .guidance import nested_guidance

        self.backbone, self.scale = backbone, float(scale)
        self.branches = [cond] if self.scale == 1 else [null, cond]
        self._combine = (lambda p: p[0]) if self.scale == 1 else (lambda p: nested_guidance(p, [self.scale]))

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self._combine(predict_noise(self.backbone, x, t, self.branches))

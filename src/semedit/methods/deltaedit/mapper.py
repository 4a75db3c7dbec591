"""DeltaEdit's Delta Mapper (§3.2, Fig. 5 b), the text direction Δt (§3.2 "Text-prompt Setting") and the relevance
matrix R_s (§3.2 "Disentanglement", StyleCLIP's global-direction recipe).

Details settled in the official code: each sub-module is a stack of four equalised linear layers with lr_mul 0.01
and the scaled leaky ReLU after every layer (the style and condition modules start with a pixel norm); the
condition is [c_i, normalize(c_j - c_i)] of unit-norm CLIP image embeddings (1,024-d there, 2 x 128 here); the
mapper's output is Δŝ for the whole of S. The official code views its coarse and medium styles as 3 and 4 vectors of
512 (every such layer has 512 channels at 1024 px); here the layers of a level differ in width, so each level is one
flat vector, as the official code's fine level is.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ...models.backbone import load_family_part
from .generator import EqualLinear

MAPPER_FOLDER = "delta-mapper"  # inside a model family's folder
RELEVANCE_FILE = "relevance.safetensors"  # R_s, inside the style generator's folder


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-8)


def sub_module(in_dim: int, out_dim: int, norm: bool = True, layers: int = 4, lr_mul: float = 0.01) -> nn.Sequential:
    return nn.Sequential(*([PixelNorm()] if norm else []),
                         *[EqualLinear(in_dim if i == 0 else out_dim, out_dim, lr_mul=lr_mul, activate=True)
                           for i in range(layers)])


class DeltaMapper(ModelMixin, ConfigMixin):
    """Δŝ = DeltaMapper(s, [c, Δc]) (Eq. 3-5): per level l, a style module e_l^s = M_l^s(s_l), a condition module
    e_l^i = M_l^i([c, Δc]) and a fusion module M_l^f([e_l^s, e_l^i]) -> Δŝ_l. `space`: "s", or "w+" for the
    ablation that maps in W+ (§5.5.4; the levels are then W+'s vectors of the coarse, medium and fine layers)."""

    @register_to_config
    def __init__(self, level_dims: tuple[int, int, int] = (640, 288, 48), clip_dim: int = 128, layers: int = 4,
                 lr_mul: float = 0.01, space: str = "s"):
        super().__init__()
        self.style = nn.ModuleList([sub_module(d, d, True, layers, lr_mul) for d in level_dims])
        self.condition = nn.ModuleList([sub_module(2 * clip_dim, d, True, layers, lr_mul) for d in level_dims])
        self.fusion = nn.ModuleList([sub_module(2 * d, d, False, layers, lr_mul) for d in level_dims])

    def forward(self, s: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = []
        for level, (style, cond, fusion) in zip(s.split(list(self.config.level_dims), 1),
                                                zip(self.style, self.condition, self.fusion)):
            out.append(fusion(torch.cat([style(level), cond(condition)], 1)))
        return torch.cat(out, 1)


def delta_condition(c_source: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """[c_i, normalize(Δ)] (the official code's condition): c_i, the unit-norm CLIP image embedding of the image
    being edited; Δ, the direction (c_j - c_i in training, Δt at inference), normalised."""
    return torch.cat([F.normalize(c_source, dim=-1), F.normalize(delta, dim=-1)], -1)


def loss(delta_hat: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Eq. 6 as the official code computes it: MSE + 1 - cos(Δŝ, Δs)."""
    return F.mse_loss(delta_hat, delta) + 1 - F.cosine_similarity(delta_hat, delta, dim=-1).mean()


# The contexts a phrase is put in to average its CLIP text embedding (the role of the 79 ImageNet templates for
# CLIP): the beginnings of world captions, which toon-64's CLIP was trained on ("a cartoon woman with long black
# hair, crying").
CONTEXTS = tuple(f"a cartoon {who}{hair}" for who in ("woman", "man") for hair in (
    "", " with short black hair", " with long blonde hair", " with curly brown hair", " with short red hair",
    " with long grey hair"))


def is_caption(text: str) -> bool:
    """A full caption (it names the person) rather than a phrase to put in the contexts."""
    return text.strip().lower().startswith(("a cartoon ", "a woman", "a man"))


def templated(text: str) -> list[str]:
    """The prompts averaged for `text`: itself if it is a caption, else each context followed by it (a context
    alone for an empty text, the neutral source of §3.2's text-prompt setting)."""
    text = text.strip()
    if is_caption(text):
        return [text]
    return [f"{c}, {text}" if text else c for c in CONTEXTS]


def text_direction(clip_text, source: str, target: str) -> torch.Tensor:
    """Δt = t_target - t_source, each the normalised mean of its unit-norm template embeddings (the official
    code's zero-shot classifier weights); `clip_text(prompts)` gives unit-norm CLIP text embeddings."""
    def embed(text):
        return F.normalize(clip_text(templated(text)).mean(0), dim=-1)

    return embed(target) - embed(source)


def relevant_channels(relevance: torch.Tensor, delta_t: torch.Tensor, threshold: float) -> torch.Tensor:
    """The S channels DeltaEdit may move: |R_s Δt| >= threshold, with R_s's rows unit-norm and Δt as
    `text_direction` gives it, not normalised (the official inference code; τ = 0.03 there, §5.2.2); Δŝ is set to
    zero on the others."""
    return (relevance @ delta_t).abs() >= threshold


def load_delta_mapper(folder: str | Path, device: str | torch.device = "cpu") -> DeltaMapper:
    return load_family_part(DeltaMapper, folder, "Delta Mapper", "semedit train delta-mapper", device)



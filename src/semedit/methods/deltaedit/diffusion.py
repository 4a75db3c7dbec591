"""DeltaEdit-D's style-conditioned diffusion model (§4.2.2, Fig. 6): eps(z_t, t, s) in toon-64's latent space, its
U-Net levels conditioned on the coarse, medium and fine parts of the style code s.

How s enters: the paper modulates each level's group norms (AdaGN, after DiffAE) in a U-Net trained from scratch
for days on eight GPUs. Here the U-Net starts from toon-64's text-conditional one, and s enters through its
cross-attention: each level of s becomes a few tokens in the text tokens' place, and with `hierarchical` each
cross-attention layer attends only to the tokens of its level by the spatial size it works at (the lowest
resolution to coarse, the middle one to medium, the highest to fine), the paper's partition of the U-Net features;
without it every layer sees all tokens. docs/deltaedit.md has the measurement behind the choice.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin

from ...engine.ddim import ddim_invert, ddim_sample
from ...models.backbone import load_family_part
from .generator import LEVELS

DIFFUSION_FOLDER = "style-diffusion"  # inside a model family's folder: unet/ and style-tokens/


class StyleTokens(ModelMixin, ConfigMixin):
    """s -> (B, 3 * tokens_per_level, cross_attention_dim): per level, a layer norm and a linear map to its tokens,
    coarse first."""

    @register_to_config
    def __init__(self, level_dims: tuple[int, int, int] = (640, 288, 48), tokens_per_level: int = 4,
                 cross_attention_dim: int = 128, hierarchical: bool = True):
        super().__init__()
        self.maps = nn.ModuleList([nn.Sequential(nn.LayerNorm(d), nn.Linear(d, tokens_per_level * cross_attention_dim))
                                   for d in level_dims])

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        k, dim = self.config.tokens_per_level, self.config.cross_attention_dim
        parts = s.split(list(self.config.level_dims), 1)
        return torch.cat([m(p).view(len(s), k, dim) for m, p in zip(self.maps, parts)], 1)


class LevelTokens:
    """A cross-attention processor that lets its layer attend only to one level's tokens."""

    def __init__(self, tokens: slice):
        self.tokens, self.inner = tokens, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states[:, self.tokens]
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


def block_levels(unet: UNet2DConditionModel) -> dict[str, str]:
    """Each block's level by the spatial size it works at: the lowest resolution (and the mid block) coarse, the
    highest fine, the ones between medium."""
    n = len(unet.config.block_out_channels)
    depth = {**{f"down_blocks.{i}": i for i in range(n)}, **{f"up_blocks.{j}": n - 1 - j for j in range(n)},
             "mid_block": n - 1}
    return {block: "coarse" if d == n - 1 else "fine" if d == 0 else "medium" for block, d in depth.items()}


def route_levels(unet: UNet2DConditionModel, tokens_per_level: int) -> None:
    """Route every cross-attention layer of `unet` to its block's level of tokens (self-attention unchanged)."""
    levels = block_levels(unet)
    processors = {}
    for name, processor in unet.attn_processors.items():
        if ".attn2." in name:
            i = LEVELS.index(levels[next(b for b in levels if name.startswith(b + "."))])
            processors[name] = LevelTokens(slice(i * tokens_per_level, (i + 1) * tokens_per_level))
        else:
            processors[name] = processor
    unet.set_attn_processor(processors)


class StyleDiffusion(nn.Module):
    """eps(z_t, t, s): the U-Net under the style tokens of s."""

    def __init__(self, unet: UNet2DConditionModel, tokens: StyleTokens):
        super().__init__()
        self.unet, self.tokens = unet, tokens
        if tokens.config.hierarchical:
            route_levels(unet, tokens.config.tokens_per_level)

    def forward(self, z_t: torch.Tensor, t, s: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(s)
        if len(tokens) != len(z_t):
            tokens = tokens.expand(len(z_t), -1, -1)
        return self.unet(z_t, t, encoder_hidden_states=tokens).sample

    def save_pretrained(self, folder: str | Path) -> None:
        """unet/ and style-tokens/ in fp16 safetensors (this model is left as it is)."""
        for name, part in (("unet", self.unet), ("style-tokens", self.tokens)):
            copy.deepcopy(part).half().save_pretrained(Path(folder) / name, safe_serialization=True)


def load_style_diffusion(folder: str | Path, device: str | torch.device = "cpu") -> StyleDiffusion:
    folder, command = Path(folder), "semedit train style-diffusion"
    unet = load_family_part(UNet2DConditionModel, folder / "unet", "style diffusion U-Net", command, device)
    tokens = load_family_part(StyleTokens, folder / "style-tokens", "style tokens", command, device)
    return StyleDiffusion(unet, tokens).eval()


def invert_and_decode(model: StyleDiffusion, z0: torch.Tensor, s: torch.Tensor, s_hat: torch.Tensor,
                      schedule, decode_batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_T, z): x_T by deterministic DDIM inversion of z0 under s (§4.2.2), then the reverse DDIM process of Eq. 15
    from x_T under each row of s_hat (s_hat = s reconstructs z0); `decode_batch` rows of s_hat per x_T."""
    x_T = ddim_invert(lambda x, t: model(x, t, s), z0, schedule)[0]
    x = x_T.repeat_interleave(decode_batch, 0) if decode_batch > 1 else x_T
    return x_T, ddim_sample(lambda x, t: model(x, t, s_hat), x, schedule)

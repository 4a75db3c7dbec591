"""The MCDM paper's trained parts. The multi-conditioned diffusion model (§3.3) and, for the pair generator, the
identity encoder (supp. §1.1, a variant of ELITE's global mapper):
CLIP image tokens of a portrait -> one Transformer decoder layer whose learned queries are the new words ->
an MLP into the text encoder's word-embedding space: c_id, "two words that describe the identity", put
right before "[X]" in the pair generator's prompts. Stored with the family (`identity-encoder/`, fp16
safetensors)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ...models.backbone import load_family_part

IDENTITY_FOLDER = "identity-encoder"  # inside a model family's folder


class IdentityEncoder(ModelMixin, ConfigMixin):
    """CLIP image tokens (B, T, image_dim) -> word embeddings c_id (B, num_words, word_dim)."""

    @register_to_config
    def __init__(self, image_dim: int = 128, word_dim: int = 128, num_words: int = 2, heads: int = 4,
                 hidden: int = 512):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_words, image_dim) * 0.02)
        self.decoder = nn.TransformerDecoderLayer(image_dim, heads, 4 * image_dim, dropout=0.0, batch_first=True,
                                                  norm_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, word_dim))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        q = self.queries.to(image_tokens.dtype).expand(image_tokens.shape[0], -1, -1)
        return self.mlp(self.decoder(q, image_tokens))


@torch.no_grad()
def clip_image_tokens(clip, processor, images: np.ndarray) -> torch.Tensor:
    """The CLIP vision tower's last hidden states (N, T, D) of uint8 N x H x W x 3 portraits."""
    pix = processor(images=list(np.asarray(images)), return_tensors="pt")["pixel_values"]
    return clip.vision_model(pixel_values=pix.to(clip.device, clip.dtype)).last_hidden_state


def load_identity_encoder(folder: str | Path, device: str | torch.device = "cpu") -> IdentityEncoder:
    return load_family_part(IdentityEncoder, folder, "identity encoder", "semedit train identity-encoder", device)


# The multi-conditioned diffusion model (§3.3, Fig. 5): toon-64's U-Net with its input widened for the spatial
# embedding c_s = E(x_A), and an adapter that turns x_A into image tokens c_im that follow the text tokens.
MCDM_FOLDER = "mcdm"  # inside a model family's folder: unet/ (8 input channels) and adapter/


class ImageEmbeddingAdapter(ModelMixin, ConfigMixin):
    """c_im = MLP([E(x_A), CLIP_im(x_A)]) (§3.3; supp. §1.2: the adapter of [2], read in the official code): the
    CLIP vision tokens of x_A and its latent, max-pooled 2x2 and one token per latent channel, mixed across tokens
    into as many tokens as CLIP gives. No activation, as in the official code. Identity-initialised: token i of
    c_im starts as CLIP token i and the latent tokens start with weight zero."""

    @register_to_config
    def __init__(self, clip_tokens: int = 65, clip_dim: int = 128, latent_channels: int = 4, latent_size: int = 16,
                 cross_attention_dim: int = 128, pool: int = 2):
        super().__init__()
        self.clip_proj = nn.Linear(clip_dim, cross_attention_dim)
        self.latent_proj = nn.Linear((latent_size // pool) ** 2, cross_attention_dim)
        self.token_mix = nn.Linear(clip_tokens + latent_channels, clip_tokens)
        with torch.no_grad():
            self.token_mix.weight.copy_(torch.eye(clip_tokens, clip_tokens + latent_channels))
            self.token_mix.bias.zero_()
            if clip_dim == cross_attention_dim:  # the official code feeds CLIP tokens straight through
                self.clip_proj.weight.copy_(torch.eye(clip_dim))
                self.clip_proj.bias.zero_()

    def forward(self, clip_tokens: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(latents, self.config.pool).flatten(2)  # (B, C, h/2 * w/2): a token per channel
        tokens = torch.cat([self.clip_proj(clip_tokens), self.latent_proj(pooled)], 1)
        return self.token_mix(tokens.transpose(1, 2)).transpose(1, 2)


def widen_conv_in(unet: UNet2DConditionModel, extra_channels: int, pretrained: bool = True) -> UNet2DConditionModel:
    """The U-Net with `extra_channels` more input channels (§3.3: 4 -> 8 for c_s), the new ones zero-initialised
    (supp. §1.2) so that it starts as the pretrained model; `pretrained=False`: the same architecture from random
    weights (the paper's "w/o Prt")."""
    wide = UNet2DConditionModel.from_config({**unet.config, "in_channels": unet.config.in_channels + extra_channels})
    if pretrained:
        state = unet.state_dict()
        w = state["conv_in.weight"]
        state["conv_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra_channels, *w.shape[2:])], 1)
        wide.load_state_dict(state)
    return wide


DIRECTIONS_FILE = "directions.json"  # {attribute: {"source": phrase, "targets": {value: phrase}}} it was trained on


class MCDM(nn.Module):
    """The trained U-Net (4 input channels more if it takes c_s) and the adapter (None without image embeddings):
    eps(z_t, t, {c_s, c_im, c_p}) with c_s concatenated to z_t and c_im after the text tokens; `directions`, the
    editing directions it was trained on, in the prompts' words."""

    def __init__(self, unet: UNet2DConditionModel, adapter: ImageEmbeddingAdapter | None,
                 directions: dict | None = None):
        super().__init__()
        self.unet, self.adapter, self.directions = unet, adapter, directions

    @property
    def spatial(self) -> bool:
        return self.unet.config.in_channels > self.unet.config.out_channels

    def forward(self, z_t, t, text, c_s, c_im=None, image=None):
        """c_s is ignored by a model without spatial embeddings; c_im: the adapter's tokens, or computed here from
        `image` = (CLIP tokens, latents)."""
        x = torch.cat([z_t, c_s], 1) if self.spatial else z_t
        if self.adapter is not None and c_im is None:
            c_im = self.adapter(*image)
        tokens = text if self.adapter is None else torch.cat([text, c_im], 1)
        return self.unet(x, t, encoder_hidden_states=tokens).sample

    def save_pretrained(self, folder: str | Path) -> None:
        """unet/ and adapter/ in fp16 safetensors (this model is left as it is)."""
        for name, part in (("unet", self.unet), ("adapter", self.adapter)):
            if part is not None:
                copy.deepcopy(part).half().save_pretrained(Path(folder) / name, safe_serialization=True)
        if self.directions is not None:
            (Path(folder) / DIRECTIONS_FILE).write_text(json.dumps(self.directions, indent=2))


def load_mcdm(folder: str | Path, device: str | torch.device = "cpu") -> MCDM:
    folder = Path(folder)
    unet = load_family_part(UNet2DConditionModel, folder / "unet", "MCDM", "semedit train mcdm", device)
    adapter = None
    if (folder / "adapter" / "config.json").exists():
        adapter = load_family_part(ImageEmbeddingAdapter, folder / "adapter", "MCDM adapter", "semedit train mcdm",
                                   device)
    directions = json.loads((folder / DIRECTIONS_FILE).read_text()) if (folder / DIRECTIONS_FILE).exists() else None
    return MCDM(unet, adapter, directions).eval()

"""The MCDM paper's trained parts. The identity encoder (supp. §1.1, a variant of ELITE's global mapper):
CLIP image tokens of a portrait -> one Transformer decoder layer whose learned queries are the new words ->
an MLP into the text encoder's word-embedding space: c_id, "two words that describe the identity", put
right before "[X]" in the pair generator's prompts. Stored with the family (`identity-encoder/`, fp16
safetensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
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

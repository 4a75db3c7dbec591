"""Text and the CLIP joint space: the prompt embeddings that condition a U-Net (as the Stable
Diffusion pipelines compute them) and CLIP's unit-norm image and text features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .images import to_tensor

MAX_TOKENS = 77  # CLIP's context length: the SD pipelines pad prompts to it


def load_tokenizer(folder):
    """A CLIPTokenizer from `folder`; padded to 77 tokens where the folder does not say (transformers 5
    then reports a huge `model_max_length`, and the pipelines pad to that)."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder)
    if tokenizer.model_max_length > 1000:
        tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def load_text_encoder(folder, dtype: torch.dtype = torch.float32):
    """The text tower in `folder`: a text_encoder/ folder, or a CLIP folder (its text half; the
    family keeps CLIP's text tower as its text encoder, so a retrained CLIP can condition a U-Net)."""
    from transformers import CLIPTextModel

    return CLIPTextModel.from_pretrained(folder, torch_dtype=dtype).eval()


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, texts) -> torch.Tensor:
    """Last hidden states (N, L, D) padded to the tokenizer's length, as the SD pipelines compute them."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def tokenize(tokenizer, texts, device=None) -> dict:
    """CLIP tokens of `texts`, padded to the longest."""
    t = tokenizer(list(texts), padding="longest", truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    return {k: v.to(device) for k, v in t.items()} if device is not None else dict(t)


def image_features(model, pixel_values) -> torch.Tensor:
    """Unit-norm projected image embeddings (transformers 5 returns them as `pooler_output`)."""
    return F.normalize(model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)


def text_features(model, tokens: dict) -> torch.Tensor:
    """Unit-norm projected text embeddings of `tokenize`d captions."""
    return F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)


@torch.no_grad()
def image_embeddings(model, images: np.ndarray, batch: int = 250) -> torch.Tensor:
    """`image_features` of uint8 N x H x W x 3 images in [-1, 1] (toon-64's CLIP preprocessing), `batch`
    at a time on the model's device (result on the CPU)."""
    dev = model.device
    return torch.cat([image_features(model, to_tensor(images[i:i + batch]).to(dev)).cpu()
                      for i in range(0, len(images), batch)])

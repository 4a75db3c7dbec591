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


def encode_prompts_with_words(text_encoder, tokenizer, texts, before: str, words: torch.Tensor) -> torch.Tensor:
    """`encode_prompts` with new word embeddings inserted right before the first token of the word `before` in
    each text (ELITE's and the MCDM paper's "new words", supp. §1.1): words (N or 1, K, D) in the token
    embedding space; differentiable in `words`. A text without `before` is an error."""
    target = tokenizer(before, add_special_tokens=False).input_ids
    if len(target) != 1:
        raise ValueError(f"{before!r} is not a single token of this tokenizer")
    length, k = tokenizer.model_max_length, words.shape[1]
    rows, at = [], []
    for text in texts:
        ids = tokenizer(text, padding="max_length", max_length=length, truncation=True).input_ids
        if target[0] not in ids:
            raise ValueError(f"{text!r} has no word {before!r} to put the new words before")
        i = ids.index(target[0])
        rows.append((ids[:i] + [target[0]] * k + ids[i:])[:length])  # placeholders, replaced below
        at.append(i)
    if max(at) + k >= length:
        raise ValueError(f"no room for {k} new words in a {length}-token prompt")
    ids = torch.tensor(rows, device=text_encoder.device)
    embed = text_encoder.get_input_embeddings()
    words = words.to(embed.weight.dtype).expand(len(rows), -1, -1)

    def put_words(module, inputs, out):
        out = out.clone()
        for n, i in enumerate(at):
            out[n, i:i + k] = words[n]
        return out

    handle = embed.register_forward_hook(put_words)
    try:
        return text_encoder(ids)[0]
    finally:
        handle.remove()


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

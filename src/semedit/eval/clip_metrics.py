"""CLIP score and directional CLIP similarity, with toon-64's CLIP or any CLIPModel the user has
(its own processor resizes and normalises the images)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def clip_image_embeddings(clip, processor, images: np.ndarray) -> torch.Tensor:
    """Unit-norm projected embeddings of uint8 NxHxWx3 images."""
    from ..models.train_clip import image_features

    pix = processor(images=list(np.asarray(images)), return_tensors="pt")["pixel_values"]
    return image_features(clip, pix.to(clip.device, clip.dtype)).float()


@torch.no_grad()
def clip_text_embeddings(clip, processor, texts: list[str]) -> torch.Tensor:
    from ..models.train_clip import text_features

    tok = processor.tokenizer(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
    return text_features(clip, {k: v.to(clip.device) for k, v in tok.items()}).float()


def clip_score(clip, processor, images: np.ndarray, texts: list[str]) -> np.ndarray:
    """Per pair: 100 * max(cos(image, text), 0) (CLIPScore as torchmetrics reports it)."""
    cos = (clip_image_embeddings(clip, processor, images) * clip_text_embeddings(clip, processor, texts)).sum(-1)
    return (100 * cos.clamp(min=0)).cpu().numpy()


def directional_similarity(clip, processor, sources: np.ndarray, edited: np.ndarray, source_texts: list[str],
                           target_texts: list[str]) -> np.ndarray:
    """Per edit: cos(E_I(edited) - E_I(source), E_T(target) - E_T(source)), the directional CLIP
    similarity of StyleGAN-NADA / InstructPix2Pix: does the image move the way the text does?"""
    di = clip_image_embeddings(clip, processor, edited) - clip_image_embeddings(clip, processor, sources)
    dt = clip_text_embeddings(clip, processor, target_texts) - clip_text_embeddings(clip, processor, source_texts)
    return F.cosine_similarity(di, dt, dim=-1).cpu().numpy()

"""CLIP score and directional CLIP similarity, with toon-64's CLIP or any CLIPModel the user has
(its own processor resizes and normalises the images)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.text import image_embeddings, image_features, text_features, tokenize
from ..world import describe, observable
from ..world.captions import value_prompts

# The attributes toon-64's CLIP is asked to tell apart zero-shot (model card, CLIP section).
ZERO_SHOT_ATTRIBUTES = ("expression", "hair_colour", "glasses", "costume", "background", "presentation",
                        "hair_style", "eyes", "mouth", "beard")


@torch.no_grad()
def clip_image_embeddings(clip, processor, images: np.ndarray) -> torch.Tensor:
    """Unit-norm projected embeddings of uint8 NxHxWx3 images."""
    pix = processor(images=list(np.asarray(images)), return_tensors="pt")["pixel_values"]
    return image_features(clip, pix.to(clip.device, clip.dtype)).float()


@torch.no_grad()
def clip_text_embeddings(clip, processor, texts: list[str]) -> torch.Tensor:
    return text_features(clip, tokenize(processor.tokenizer, texts, clip.device)).float()


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


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, images: np.ndarray, records, attributes=None, batch: int = 250) -> dict:
    """Per attribute: the share of images whose highest-scoring template caption names the true value."""
    model.eval()
    img = image_embeddings(model, images, batch)
    out = {}
    for attr in attributes or ZERO_SHOT_ATTRIBUTES:
        prompts = value_prompts(attr)
        values = list(prompts)
        # one text embedding per value: the normalised mean over its prompts
        txt = torch.stack([F.normalize(text_features(model, tokenize(tokenizer, ps, model.device)).mean(0), dim=0)
                           for ps in prompts.values()]).cpu()
        keep = np.array([observable(r)[attr] for r in records])
        pred = (img @ txt.T).argmax(1).numpy()
        truth = np.array([values.index(getattr(r, attr)) for r in records])
        out[attr] = float((pred == truth)[keep].mean())
    return out


@torch.no_grad()
def retrieval_top1(model, tokenizer, images, records, group: int = 100) -> float:
    """Text-to-image retrieval: for each full caption, is its own image the best of `group` images?"""
    group = min(group, len(images))
    hits, total = 0, 0
    for s in range(0, len(images) - group + 1, group):
        img = image_embeddings(model, images[s:s + group], group)
        txt = text_features(model, tokenize(tokenizer, [describe(r) for r in records[s:s + group]], model.device)).cpu()
        hits += int(((txt @ img.T).argmax(1) == torch.arange(group)).sum())
        total += group
    return hits / total

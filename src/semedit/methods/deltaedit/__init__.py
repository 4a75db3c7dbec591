"""DeltaEdit (Lyu et al., "DeltaSpace: A Semantic-aligned Feature Space for Flexible Text-guided Image Editing"):
a Delta Mapper trained without text, on CLIP image-embedding differences of image pairs and the matching style-space
differences, then driven by the CLIP text-embedding difference of two prompts, zero-shot, in one forward pass.

In the paper's order (§3.2, §4.1, Fig. 5 c): the input inverted to W+ and its styles s (§5.1: e4e), its CLIP image
embedding c_i, the text direction Δt from the source and target prompts (templates averaged), Δŝ =
DeltaMapper(s, c_i, Δt) (Eq. 4), the channels whose relevance |R_s Δt| is under the threshold set to zero (§3.2),
ŝ = s + α Δŝ, and the edited image: G(ŝ) (Eq. 7, DeltaEdit-G), or the style-conditioned diffusion's reverse
DDIM process under ŝ from the input's x_T, inverted under s (Eq. 15, DeltaEdit-D).
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ...engine.conditioning import decode_latents, encode_image
from ...engine.counting import counting_as_unet, phase
from ...engine.ddim import make_schedule
from ...models.images import to_tensor, to_uint8
from ...models.text import image_features, text_features, tokenize
from ..base import (EditRequest, EditResult, MethodConfig, cached_part, provenance, register, setting,
                    trained_part_folder)
from .diffusion import DIFFUSION_FOLDER, invert_and_decode, load_style_diffusion
from .generator import LEVELS, STYLE_FOLDER, level_of, load_style_generator
from .mapper import MAPPER_FOLDER, RELEVANCE_FILE, delta_condition, load_delta_mapper, relevant_channels, text_direction
from .relevance import load_relevance


@dataclass
class DeltaEditConfig(MethodConfig):
    variant: str = setting("g", "the decoder: g, the style generator (DeltaEdit-G, §4.1); d, the style-conditioned "
                                "diffusion from the input's inverted x_T (DeltaEdit-D, §4.2.2)", choices=("g", "d"))
    strength: float = setting(1.0, "alpha in s + alpha * Δŝ (the official code adds Δŝ as predicted: 1)", lo=0, hi=10)
    threshold: float = setting(0.03, "beta: channels with |R_s Δt| under it stay put (§5.2.2: 0.03; 0: none)",
                               lo=0, hi=1)
    trained_model: str | None = setting(None, f"folder of the Delta Mapper; none: the family's {MAPPER_FOLDER}/")
    style_generator: str | None = setting(None, f"folder of the style generator, its encoder and R_s; none: the "
                                                f"family's {STYLE_FOLDER}/")
    steps: int = setting(100, "DeltaEdit-D: DDIM steps of the inversion and of the decoding (§5.3.1: T = 100)",
                         lo=1, hi=1000)
    diffusion_model: str | None = setting(None, f"DeltaEdit-D: folder of the style-conditioned diffusion; none: the "
                                                f"family's {DIFFUSION_FOLDER}/")


def parts_for(backbone, config: DeltaEditConfig):
    """The style generator, its encoder, R_s (None when the threshold is 0 or the mapper works in W+) and the Delta
    Mapper."""
    gen_folder = trained_part_folder(backbone, config.style_generator, STYLE_FOLDER, "style generator",
                                     "style_generator")
    map_folder = trained_part_folder(backbone, config.trained_model, MAPPER_FOLDER, "Delta Mapper", "trained_model")
    generator, encoder = cached_part(gen_folder, "generator/config.json", backbone.device, load_style_generator)
    mapper = cached_part(map_folder, "config.json", backbone.device, load_delta_mapper)
    if mapper.config.space == "s" and sum(mapper.config.level_dims) != generator.style_dim:
        raise ValueError(f"the Delta Mapper in {map_folder} maps {sum(mapper.config.level_dims)} style channels; the "
                         f"style generator in {gen_folder} has {generator.style_dim}")
    relevance = None
    if config.threshold > 0 and mapper.config.space == "s":
        relevance = cached_part(gen_folder, RELEVANCE_FILE, backbone.device, load_relevance)
    return generator, encoder, relevance, mapper


def diffusion_for(backbone, config: DeltaEditConfig):
    folder = trained_part_folder(backbone, config.diffusion_model, DIFFUSION_FOLDER, "style-conditioned diffusion",
                                 "diffusion_model")
    return cached_part(folder, "unet/config.json", backbone.device, load_style_diffusion)


_TEXT_EMBEDDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # CLIP model -> {prompts: embeddings}
KEPT_PROMPT_LISTS = 1024  # per CLIP model, oldest dropped first (a long-running app sees many prompts)


def clip_text(backbone):
    """Unit-norm CLIP text embeddings of a list of prompts, kept per CLIP model and list: Δt embeds 12 templated
    prompts per text, and texts recur between edits (the empty source of every zero-shot edit)."""
    kept = _TEXT_EMBEDDINGS.setdefault(backbone.clip, {})

    def embed(prompts):
        key = tuple(prompts)
        if key not in kept:
            if len(kept) >= KEPT_PROMPT_LISTS:
                kept.pop(next(iter(kept)))
            kept[key] = text_features(backbone.clip, tokenize(backbone.clip_processor.tokenizer, prompts,
                                                              backbone.device))
        return kept[key]
    return embed


@dataclass
class Codes:
    """An image's codes (§5.1): W+ from the encoder, its styles s, and its unit-norm CLIP image embedding c_i."""
    image: np.ndarray
    w_plus: torch.Tensor
    s: torch.Tensor
    c_i: torch.Tensor


def codes_of(backbone, generator, encoder, image: np.ndarray) -> Codes:
    x = to_tensor(image[None]).to(backbone.device)
    w_plus = encoder(x)
    return Codes(image, w_plus, generator.styles(w_plus), image_features(backbone.clip, x))


def edit_direction(backbone, mapper, relevance, codes: Codes, source: str, target: str, threshold: float):
    """(Δŝ, channels moved): Δt from the prompts (§3.2, text-prompt setting: template-averaged CLIP text
    embeddings, target minus source), Δŝ = DeltaMapper(s, c_i, Δt) (Eq. 4; in W+ for the ablation of §5.5.4), zero
    on the channels irrelevant to Δt by R_s (§3.2, disentanglement)."""
    if target.strip().lower() == source.strip().lower():
        raise ValueError("the source and target prompts are the same: DeltaEdit edits along their difference")
    delta_t = text_direction(clip_text(backbone), source, target)[None]
    code = codes.s if mapper.config.space == "s" else codes.w_plus.flatten(1)
    delta = mapper(code, delta_condition(codes.c_i, delta_t))
    if relevance is None:
        return delta, delta.shape[1]
    keep = relevant_channels(relevance, delta_t[0], threshold)
    return delta * keep, int(keep.sum())


def edited_codes(generator, space: str, codes: Codes, delta: torch.Tensor, strength: float):
    """(ŝ, ŵ): s + alpha Δŝ with W+ unchanged, or in W+, ŵ = w + alpha Δŵ and ŝ its styles."""
    if space == "s":
        return codes.s + strength * delta, codes.w_plus
    w_hat = codes.w_plus + strength * delta.view_as(codes.w_plus)
    return generator.styles(w_hat), w_hat


def decode_styles(backbone, config, generator, codes: Codes, s_hat: torch.Tensor, w_hat: torch.Tensor):
    """The images (uint8, one per row of ŝ) and intermediates. G: G(ŝ) (Eq. 7), toRGB's styles from W+. D: x_T by
    DDIM inversion of the input's latent under its s, then Eq. 15's reverse process under each ŝ from it (§4.2.2).
    (ŝ = s gives the reconstruction, Fig. 17's "Recon.".)"""
    n = len(s_hat)
    if config.variant == "g":
        return to_uint8(generator.synthesis(s_hat, w_hat)), {}
    model = diffusion_for(backbone, config)
    z0 = encode_image(backbone, codes.image[None])
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    with counting_as_unet(model.unet), phase("inversion and decoding", 2 * config.steps):
        x_T, z = invert_and_decode(model, z0, codes.s, s_hat, schedule, decode_batch=n)
    return decode_latents(backbone, z), {"x_T": x_T, "latents": z}


@register("deltaedit", DeltaEditConfig)
@torch.no_grad()
def deltaedit(backbone, request: EditRequest, config: DeltaEditConfig = DeltaEditConfig(), seed: int = 0) -> EditResult:
    if backbone.clip is None:
        raise ValueError(f"{backbone.name} has no CLIP model; DeltaEdit reads CLIP image and text embeddings")
    generator, encoder, relevance, mapper = parts_for(backbone, config)
    # 1. The input's codes: W+, s and c_i (§5.1).
    codes = codes_of(backbone, generator, encoder, request.image)
    # 2-4. Δt, Δŝ = DeltaMapper(s, c_i, Δt) (Eq. 4) and R_s (§3.2).
    delta, kept = edit_direction(backbone, mapper, relevance, codes, request.source_prompt, request.target_prompt,
                                 config.threshold)
    # 5. ŝ = s + alpha Δŝ, decoded by G (Eq. 7) or by the style-conditioned diffusion (Eq. 15).
    s_hat, w_hat = edited_codes(generator, mapper.config.space, codes, delta, config.strength)
    images, extra = decode_styles(backbone, config, generator, codes, s_hat, w_hat)
    return EditResult(image=images[0], mask=None, intermediates={**extra, "delta_s": delta, "styles": codes.s},
                      provenance={**provenance("deltaedit", config, seed, backbone), "channels_moved": kept,
                                  "channels": delta.shape[1], "space": mapper.config.space})


@torch.no_grad()
def interpolate(backbone, image: np.ndarray, edit_a: tuple[str, str], edit_b: tuple[str, str], omegas,
                config: DeltaEditConfig = DeltaEditConfig()) -> np.ndarray:
    """Attribute interpolation (§5.2.1, Fig. 10): s^omega = omega ŝ_a + (1 - omega) ŝ_b for the edits a and b, each a
    (source, target) prompt pair, decoded at every omega (uint8, one image per omega)."""
    generator, encoder, relevance, mapper = parts_for(backbone, config)
    codes = codes_of(backbone, generator, encoder, image)
    ends = [edited_codes(generator, mapper.config.space, codes,
                         edit_direction(backbone, mapper, relevance, codes, src, tgt, config.threshold)[0],
                         config.strength) for src, tgt in (edit_a, edit_b)]
    w = torch.tensor([float(o) for o in omegas])[:, None]
    (s_a, w_a), (s_b, w_b) = ends
    s_mix = w * s_a + (1 - w) * s_b
    w_mix = w[:, :, None] * w_a + (1 - w[:, :, None]) * w_b
    return decode_styles(backbone, config, generator, codes, s_mix, w_mix)[0]


@torch.no_grad()
def style_mix(backbone, content: np.ndarray, style: np.ndarray, levels=("coarse",),
              config: DeltaEditConfig = DeltaEditConfig()) -> np.ndarray:
    """Style mixing (§5.3.1, Fig. 15): the content image's s with the given levels' styles (and toRGB styles) taken
    from the style image, decoded (D: from the content's x_T); uint8 HxWx3."""
    unknown = set(levels) - set(LEVELS)
    if not levels or unknown:
        raise ValueError(f"levels must be some of {', '.join(LEVELS)}, got {', '.join(levels) or 'none'}")
    generator, encoder, _, _ = parts_for(backbone, dataclasses.replace(config, threshold=0.0))
    a, b = (codes_of(backbone, generator, encoder, img) for img in (content, style))
    s_mix, w_mix = a.s.clone(), a.w_plus.clone()
    for level in levels:
        sl = generator.level_slices()[level]
        s_mix[:, sl] = b.s[:, sl]
    for j in range(len(generator.to_rgbs)):  # toRGB j (at 4 * 2^j px) reads w_{2j+1}
        if level_of(4 * 2**j) in levels:
            w_mix[:, 2 * j + 1] = b.w_plus[:, 2 * j + 1]
    return decode_styles(backbone, config, generator, a, s_mix, w_mix)[0][0]

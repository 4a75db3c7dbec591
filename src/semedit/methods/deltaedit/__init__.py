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

from dataclasses import dataclass

import torch

from ...engine.conditioning import decode_latents, encode_image
from ...engine.counting import counting_as_unet, phase
from ...engine.ddim import make_schedule
from ...models.images import to_tensor, to_uint8
from ...models.text import image_features, text_features, tokenize
from ..base import EditRequest, EditResult, MethodConfig, provenance, register, setting, trained_part_folder
from .diffusion import DIFFUSION_FOLDER, invert_and_decode, load_style_diffusion
from .generator import STYLE_FOLDER, load_style_generator
from .mapper import MAPPER_FOLDER, delta_condition, load_delta_mapper, relevant_channels, text_direction
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


_LOADED: dict[tuple, tuple] = {}


def parts_for(backbone, config: DeltaEditConfig):
    """The style generator, its encoder, R_s (None when the threshold is 0) and the Delta Mapper, loaded once per
    folder, version on disk and device."""
    gen_folder = trained_part_folder(backbone, config.style_generator, STYLE_FOLDER, "style generator",
                                     "style_generator")
    map_folder = trained_part_folder(backbone, config.trained_model, MAPPER_FOLDER, "Delta Mapper", "trained_model")
    stamp = [(p / "config.json").stat().st_mtime_ns if (p / "config.json").exists() else None
             for p in (gen_folder / "generator", map_folder)]
    key = (str(gen_folder.resolve()), str(map_folder.resolve()), *stamp, str(backbone.device))
    if key not in _LOADED:
        try:
            generator, encoder = load_style_generator(gen_folder, backbone.device)
            mapper = load_delta_mapper(map_folder, backbone.device)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        _LOADED[key] = (generator, encoder, mapper)
    generator, encoder, mapper = _LOADED[key]
    if mapper.config.space == "s" and sum(mapper.config.level_dims) != generator.style_dim:
        raise ValueError(f"the Delta Mapper in {map_folder} maps {sum(mapper.config.level_dims)} style channels; the "
                         f"style generator in {gen_folder} has {generator.style_dim}")
    relevance = None
    if config.threshold > 0 and mapper.config.space == "s":
        try:
            relevance = load_relevance(gen_folder).to(backbone.device)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
    return generator, encoder, relevance, mapper


def diffusion_for(backbone, config: DeltaEditConfig):
    folder = trained_part_folder(backbone, config.diffusion_model, DIFFUSION_FOLDER, "style-conditioned diffusion",
                                 "diffusion_model")
    weights = folder / "unet" / "config.json"
    key = (str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else None, str(backbone.device))
    if key not in _LOADED:
        try:
            _LOADED[key] = load_style_diffusion(folder, backbone.device)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
    return _LOADED[key]


def clip_text(backbone):
    def embed(prompts):
        return text_features(backbone.clip, tokenize(backbone.clip_processor.tokenizer, prompts, backbone.device))
    return embed


@register("deltaedit", DeltaEditConfig)
@torch.no_grad()
def deltaedit(backbone, request: EditRequest, config: DeltaEditConfig = DeltaEditConfig(), seed: int = 0) -> EditResult:
    if backbone.clip is None:
        raise ValueError(f"{backbone.name} has no CLIP model; DeltaEdit reads CLIP image and text embeddings")
    if request.target_prompt.strip().lower() == request.source_prompt.strip().lower():
        raise ValueError("the source and target prompts are the same: DeltaEdit edits along their difference")
    generator, encoder, relevance, mapper = parts_for(backbone, config)
    x = to_tensor(request.image[None]).to(backbone.device)
    # 1. The input's codes (§5.1): W+ from the encoder, its styles s, and its CLIP image embedding c_i.
    w_plus = encoder(x)
    s = generator.styles(w_plus)
    c_i = image_features(backbone.clip, x)
    # 2. Δt (§3.2, text-prompt setting): template-averaged CLIP text embeddings, target minus source.
    delta_t = text_direction(clip_text(backbone), request.source_prompt, request.target_prompt)[None]
    # 3. Δŝ = DeltaMapper(s, c_i, Δt) (Eq. 4), in S or, for the W+ ablation (§5.5.4), in W+.
    code = s if mapper.config.space == "s" else w_plus.flatten(1)
    delta = mapper(code, delta_condition(c_i, delta_t))
    # 4. Disentanglement (§3.2): Δŝ is zero on the channels irrelevant to Δt.
    kept = delta.shape[1]
    if relevance is not None:
        keep = relevant_channels(relevance, delta_t[0], config.threshold)
        delta, kept = delta * keep, int(keep.sum())
    # ŝ = s + alpha Δŝ (in W+: ŵ = w + alpha Δŵ and ŝ its styles)
    if mapper.config.space == "s":
        s_hat, w_hat = s + config.strength * delta, w_plus
    else:
        w_hat = w_plus + config.strength * delta.view_as(w_plus)
        s_hat = generator.styles(w_hat)
    if config.variant == "g":
        # 5. x_edit = G(ŝ) (Eq. 7), toRGB's styles from W+; with the reconstruction G(s) (Fig. 17's "Recon.")
        # in the same batch.
        edited, reconstruction = to_uint8(generator.synthesis(torch.cat([s_hat, s]), torch.cat([w_hat, w_plus])))
        extra = {"reconstruction": reconstruction}
    else:
        # 5. x_T from DDIM inversion of the input's latent under s, then Eq. 15's reverse process under ŝ (§4.2.2).
        model = diffusion_for(backbone, config)
        z0 = encode_image(backbone, request.image[None])
        with counting_as_unet(model.unet), phase("inversion and decoding", 2 * config.steps):
            x_T, z = invert_and_decode(model, z0, s, s_hat, make_schedule(backbone.scheduler_config, config.steps))
        edited = decode_latents(backbone, z)[0]
        extra = {"x_T": x_T, "latents": z}
    return EditResult(image=edited, mask=None, intermediates={**extra, "delta_s": delta, "styles": s},
                      provenance={**provenance("deltaedit", config, seed, backbone), "channels_moved": kept,
                                  "channels": delta.shape[1], "space": mapper.config.space})



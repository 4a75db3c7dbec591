"""MCDM (Chen et al., "Learning Feature-Preserving Portrait Editing from Generated Pairs"): a multi-conditioned
diffusion model, trained on pairs that the base model generates itself (`pairs.py`, `semedit train mcdm`), edits
a portrait in one short sampling run.

In the paper's order (§3.3-3.4, supp. §1.3): the three conditions of x_A, the spatial embedding c_s = E(x_A)
(concatenated with z_t), the image embedding c_im (CLIP tokens and the pooled latent through the adapter, after
the text tokens) and the text c_p; the edit mask, computed by the trained model itself (x_A noised halfway,
|eps(p_b) - eps(p_a)| over 10 noise draws, normalised, blurred, thresholded at lambda); then UniPC from pure
noise with nested classifier-free guidance over image, spatial and text conditions (scales s1, s2, s3), its
noise mask-guided by Eq. 3: the target prompt p_b inside the mask, the source prompt p_a (which the model learnt
to reconstruct x_A with) outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...engine.conditioning import decode_latents, encode_image, encode_text
from ...engine.counting import counting_as_unet, phase
from ...engine.ddim import alphas_cumprod, q_sample, scheduler_sample, seeded_noise
from ...engine.guidance import nested_guidance
from ...engine.masks import blend, gaussian_blur, noise_difference, normalise, resize, threshold
from ..base import (EditRequest, EditResult, MethodConfig, cached_part, provenance, register, setting,
                    trained_part_folder)
from .model import MCDM, MCDM_FOLDER, clip_image_tokens, load_mcdm


@dataclass
class MCDMConfig(MethodConfig):
    steps: int = setting(20, "UniPC steps from pure noise (supp. §1.3: 20)", lo=1, hi=1000)
    image_guidance: float = setting(3.0, "s1, classifier-free guidance of the image embeddings (supp. §1.3: 3)",
                                    lo=0, hi=50)
    spatial_guidance: float = setting(3.0, "s2, of the spatial embeddings (supp. §1.3: 3)", lo=0, hi=50)
    text_guidance: float = setting(5.0, "s3, of the text (supp. §1.3: 5)", lo=0, hi=50)
    mask_guided: bool = setting(True, "mask-guided noise, Eq. 3 (off: the paper's \"w/o Mask\", p_b everywhere)")
    mask_samples: int = setting(10, "noise draws averaged for the mask (supp. §1.3: 10)", lo=1, hi=100)
    mask_strength: float = setting(0.5, "share of the steps x_A is noised for the mask's predictions (supp. §1.3: "
                                        "10 of 20)", lo=0, hi=1, lo_open=True)
    mask_threshold: float | None = setting(None, "lambda on the normalised, blurred map; none: the direction's, 0.2 "
                                                "for costumes, 0.35 for expressions (supp. §1.3)", lo=0, hi=1,
                                           hi_open=True)
    mask_blur: int = setting(5, "Gaussian blur kernel of the normalised map, odd (supp. §1.3: 5)", lo=1, hi=15)
    trained_model: str | None = setting(None, f"folder of the trained MCDM; none: the model family's {MCDM_FOLDER}/")

    def check(self) -> None:
        if self.mask_blur % 2 == 0:
            raise ValueError(f"mask_blur must be odd, got {self.mask_blur}")
        if int(self.steps * self.mask_strength) < 1:
            raise ValueError(f"steps={self.steps} with mask_strength={self.mask_strength} noises the input for no "
                             "step; raise either")


MASK_THRESHOLD = {"costume": 0.2, "expression": 0.35}  # supp. §1.3: lambda per task


def model_for(backbone, config: MCDMConfig) -> MCDM:
    """The trained MCDM (loaded once per folder, version on disk and device)."""
    folder = trained_part_folder(backbone, config.trained_model, MCDM_FOLDER, "trained MCDM", "trained_model")
    model = cached_part(folder, "unet/config.json", backbone.device, load_mcdm)
    if model.unet.config.sample_size != backbone.unet.config.sample_size:
        raise ValueError(f"the MCDM in {folder} was trained on {model.unet.config.sample_size}-latent images, "
                         f"{backbone.name} makes {backbone.unet.config.sample_size}")
    return model


def trained_direction(model: MCDM, request: EditRequest) -> str | None:
    """The attribute of the trained direction the edit asks for: a target phrase the model was trained on that the
    target prompt names and the source prompt does not. A model that does not list its directions: None."""
    if model.directions is None:
        return None
    source, target = request.source_prompt.lower(), request.target_prompt.lower()
    for attribute, entry in model.directions.items():
        if any(p in target and p not in source for p in entry["targets"].values()):
            return attribute
    trained = "; ".join(f"{a}: {e['source']} -> {', '.join(e['targets'].values())}"
                        for a, e in model.directions.items())
    raise ValueError(f"this MCDM edits only the directions it was trained on ({trained}); the target prompt names "
                     "none of their targets that the source prompt does not already name")


@dataclass
class Branch:
    """One guidance branch of the MCDM: text tokens, the spatial embedding c_s (zeros when dropped) and the image
    tokens c_im (the null image's when dropped)."""
    text: torch.Tensor
    c_s: torch.Tensor
    c_im: torch.Tensor | None


def image_conditions(backbone, model: MCDM, image: np.ndarray) -> tuple[torch.Tensor, list]:
    """c_s = E(x_A) (§3.3) and [c_im, null c_im]: the adapter on x_A and on a black image, the official code's
    null image (None without an adapter)."""
    black = np.zeros_like(image)
    latents = encode_image(backbone, np.stack([image, black]))
    if model.adapter is None:
        return latents[:1], [None, None]
    tokens = clip_image_tokens(backbone.clip, backbone.clip_processor, np.stack([image, black]))
    c_im = model.adapter(tokens.to(latents.dtype), latents)
    return latents[:1], [c_im[:1], c_im[1:]]


def predict(model: MCDM, x: torch.Tensor, t: int, branches: list[Branch]) -> list[torch.Tensor]:
    """eps(x, t, branch) for every branch, one U-Net batch."""
    n, b = len(branches), x.shape[0]
    text = torch.cat([br.text.expand(b, -1, -1) for br in branches])
    c_s = torch.cat([br.c_s.expand(b, -1, -1, -1) for br in branches])
    c_im = None if model.adapter is None else torch.cat([br.c_im.expand(b, -1, -1) for br in branches])
    tt = torch.full((n * b,), int(t), device=x.device, dtype=torch.long)
    return list(model(x.repeat(n, 1, 1, 1), tt, text, c_s, c_im).chunk(n))


def guided_noise(model: MCDM, x, t, nested: list[Branch], texts: list[Branch], scales) -> list[torch.Tensor]:
    """The nested classifier-free guidance of the official code (Eq. 1 with three conditions): branches (none),
    (image), (image, spatial) and (text, image, spatial) for each text, eps = e_0 + s1 (e_I - e_0) +
    s2 (e_IS - e_I) + s3 (e_TIS - e_IS); one guided prediction per text."""
    e_null, e_image, e_spatial, *e_text = predict(model, x, t, nested + texts)
    return [nested_guidance([e_null, e_image, e_spatial, e], scales) for e in e_text]


def mask_guided_noise(model: MCDM, nested, source: Branch, target: Branch, scales, mask):
    """eps(x, t) of Eq. 3: the guided prediction under p_b inside the mask, under p_a outside (mask None: p_b
    everywhere, the paper's "w/o Mask")."""
    def eps(x, t):
        if mask is None:
            return guided_noise(model, x, t, nested, [target], scales)[0]
        e_a, e_b = guided_noise(model, x, t, nested, [source, target], scales)
        return blend(e_b, e_a, mask)
    return eps


def edit_mask(model: MCDM, z0, schedule, nested, texts, config: MCDMConfig, lam: float, seed: int):
    """The binary latent mask and its soft map (supp. §1.3, DiffEdit's recipe on the trained model): x_A noised to
    the level `mask_strength` of the way, the guided one-step predictions under p_a and p_b for `mask_samples`
    noise draws; N(|z_{t-1} - z'_{t-1}|) > lambda, where one deterministic step makes the two latents differ by
    a fixed multiple of the predicted noises' difference, which N (normalisation to [0, 1], then a Gaussian blur)
    takes out."""
    t = int(schedule.timesteps[config.steps - int(config.steps * config.mask_strength)])
    a = alphas_cumprod(schedule.config)[t]
    x = q_sample(z0, seeded_noise((config.mask_samples, *z0.shape[1:]), seed, z0), a)
    e_a, e_b = guided_noise(model, x, t, nested, texts, (config.image_guidance, config.spatial_guidance,
                                                            config.text_guidance))
    soft = gaussian_blur(normalise(noise_difference(e_b, e_a, samples=config.mask_samples), "minmax"),
                         config.mask_blur)
    return threshold(soft, lam), soft


def unipc(backbone, steps: int):
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler.from_config(backbone.scheduler_config)
    sched.set_timesteps(steps)
    return sched


@register("mcdm", MCDMConfig)
@torch.no_grad()
def mcdm(backbone, request: EditRequest, config: MCDMConfig = MCDMConfig(), seed: int = 0) -> EditResult:
    model = model_for(backbone, config)
    if model.adapter is not None and backbone.clip is None:
        raise ValueError(f"{backbone.name} has no CLIP image encoder for the MCDM's image embeddings")
    attribute = trained_direction(model, request)
    lam = config.mask_threshold if config.mask_threshold is not None else MASK_THRESHOLD.get(attribute, 0.2)
    # 1. The conditions (§3.3): c_s, c_im and the texts p_b (target) and p_a (source), each with its null.
    c_s, (c_im, null_im) = image_conditions(backbone, model, request.image)
    null_text, text_a, text_b = encode_text(backbone, ["", request.source_prompt, request.target_prompt]).chunk(3)
    no_s = torch.zeros_like(c_s)
    nested = [Branch(null_text, no_s, null_im), Branch(null_text, no_s, c_im), Branch(null_text, c_s, c_im)]
    target, source = Branch(text_b, c_s, c_im), Branch(text_a, c_s, c_im)
    scales = (config.image_guidance, config.spatial_guidance, config.text_guidance)
    with counting_as_unet(model.unet):
        # 2. The edit mask from the trained model (§3.4, supp. §1.3).
        mask = soft = None
        if config.mask_guided:
            with phase("mask", 1):
                mask, soft = edit_mask(model, c_s, unipc(backbone, config.steps), nested, [source, target], config,
                                       lam, seed)

        # 3. UniPC from pure noise with Eq. 3's mask-guided noise: p_b inside the mask, p_a outside.
        sampler = unipc(backbone, config.steps)
        x = seeded_noise(c_s.shape, seed, c_s) * sampler.init_noise_sigma
        with phase("sampling", config.steps):
            z = scheduler_sample(mask_guided_noise(model, nested, source, target, scales, mask), x, sampler)
    up = None if mask is None else resize(mask, (backbone.image_size,) * 2)[0, 0].cpu().numpy()
    return EditResult(image=decode_latents(backbone, z)[0], mask=up,
                      intermediates={"mask_latent": mask, "mask_soft": soft, "latents": z,
                                     "image_embeddings": c_im},
                      provenance={**provenance("mcdm", config, seed, backbone), "direction": attribute,
                                  "mask_threshold": lam if config.mask_guided else None})

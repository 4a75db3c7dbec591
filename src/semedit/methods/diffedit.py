"""DiffEdit: an edit mask from contrasting noise predictions under the source and target prompts,
DDIM inversion of the input to the encode ratio, and decoding under the target prompt with the
inverted latents kept outside the mask.

Defaults follow diffusers' StableDiffusionDiffEditPipeline (10 mask samples at strength 0.5,
clamp at 3x the mean, binarise at 0.5; inpaint strength 0.8; guidance 7.5), the community's
reference. Two deliberate differences, each a config field that can restore diffusers' behaviour:
- `blend_with="aligned"`: after a step reaches level i, the outside of the mask is taken from
  the inverted latent *of level i*; diffusers blends with the latent one level noisier
  ("previous"), which leaves the background one step under-denoised.
- `inversion_eps_timestep="current"`: the inversion evaluates the noise at the latent's own
  timestep (ITO paper Eq. 2); diffusers' DDIMInverseScheduler uses the next one ("next").
Inversion runs without classifier-free guidance by default (`inversion_guidance_scale=1`):
DDIM inversion drifts under CFG 7.5 (diffusers' invert default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.conditioning import Condition, EditConditions, GuidedNoise, decode_latents, encode_image, encode_text
from ..engine.counting import phase
from ..engine.ddim import ddim_invert, ddim_sample, make_schedule
from ..engine.masks import blend, estimate_edit_mask, normalise, resize, threshold, user_mask
from .base import EditRequest, EditResult, MethodConfig, provenance, register, setting


@dataclass
class DiffEditConfig(MethodConfig):
    steps: int = setting(50, "DDIM steps over the whole schedule (diffusers' DiffEdit: 50)", lo=1, hi=1000)
    encode_ratio: float = setting(0.8, "inpaint strength: the share of the schedule inverted and re-decoded "
                                       "(DiffEdit's encoding ratio; diffusers: 0.8)", lo=0, hi=1, lo_open=True)
    guidance_scale: float = setting(7.5, "classifier-free guidance of decoding and mask (diffusers: 7.5)", lo=0, hi=50)
    mask_samples: int = setting(10, "noise samples averaged for the mask (diffusers: 10)", lo=1, hi=100)
    mask_encode_strength: float = setting(0.5, "noise level of the mask's predictions (diffusers: 0.5)", lo=0, hi=1,
                                          lo_open=True)
    mask_clamp_ratio: float = setting(3.0, "the difference map is clamped at this times its mean (diffusers: 3)",
                                      lo=0, hi=100, lo_open=True)
    mask_threshold: float = setting(0.5, "binarisation threshold of the normalised map (diffusers: 0.5)", lo=0, hi=1,
                                    hi_open=True)
    inversion_guidance_scale: float = setting(1.0, "CFG during DDIM inversion (1: none; inversion drifts under CFG)",
                                              lo=0, hi=50)
    inversion_eps_timestep: str = setting("current", "noise of the inversion at the latent's own timestep, or "
                                                     "\"next\" (diffusers)", choices=("current", "next"))
    blend_with: str = setting("aligned", "the inverted latent of the level reached, or \"previous\" (diffusers)",
                              choices=("aligned", "previous"))
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")

    def check(self) -> None:
        self.require_steps(encode_ratio=self.encode_ratio, mask_encode_strength=self.mask_encode_strength)


def diffedit_mask(backbone, z0, conds: EditConditions, schedule, config: DiffEditConfig, seed: int):
    """The binary latent mask (1, 1, h, w) and its soft map (DiffEdit §3.1)."""
    diff = estimate_edit_mask(backbone, z0, schedule, schedule.start_index(config.mask_encode_strength), conds,
                              config.mask_samples, seed, config.guidance_scale)
    soft = normalise(diff, "mean_clamp", config.mask_clamp_ratio)
    return threshold(soft, config.mask_threshold), soft


@register("diffedit", DiffEditConfig, mask=True)
@torch.no_grad()
def diffedit(backbone, request: EditRequest, config: DiffEditConfig = DiffEditConfig(), seed: int = 0) -> EditResult:
    z0 = encode_image(backbone, request.image)
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    null, source, target = (Condition(e) for e in encode_text(
        backbone, [config.negative_prompt, request.source_prompt, request.target_prompt]).chunk(3))
    if request.mask is not None:
        mask = soft = user_mask(request.mask, tuple(z0.shape[-2:]), z0)
    else:  # one null branch serves both guided predictions
        with phase("mask", 1):
            mask, soft = diffedit_mask(backbone, z0, EditConditions(source, target, null), schedule, config, seed)
    start = schedule.start_index(config.encode_ratio)
    invert_eps = GuidedNoise(backbone, null, source, config.inversion_guidance_scale)
    with phase("inversion", schedule.num_steps - start):
        inverted = ddim_invert(invert_eps, z0, schedule, start, config.inversion_eps_timestep)
    offset = 0 if config.blend_with == "aligned" else 1
    decode_eps = GuidedNoise(backbone, null, target, config.guidance_scale)
    with phase("decoding", schedule.num_steps - start):
        z = ddim_sample(decode_eps, inverted[start], schedule, start,
                        after_step=lambda level, x: blend(x, inverted[level - offset], mask))
    up = resize(mask, (backbone.image_size,) * 2)[0, 0].cpu().numpy()
    return EditResult(
        image=decode_latents(backbone, z)[0], mask=up,
        intermediates={"mask_latent": mask, "mask_soft": soft, "inverted_latents": inverted, "latents": z},
        provenance=provenance("diffedit", config, seed, backbone))

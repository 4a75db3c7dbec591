"""ControlNet-only editing, the ITO paper's simplest layout baseline (§4 "Layout-conditioned image
editing"): DDIM inversion of the input under its original condition, then decoding under the edit
condition (text and/or ControlNet layouts) with nothing that preserves the input. It reaches the
new layout and loses the rest; ITO is judged between it and DiffEdit."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.conditioning import GuidedNoise, decode_latents, encode_image
from ..engine.counting import phase
from ..engine.ddim import ddim_invert, ddim_sample, make_schedule
from .base import EditRequest, EditResult, MethodConfig, edit_conditions, provenance, register, setting


@dataclass
class ControlNetEditConfig(MethodConfig):
    steps: int = setting(25, "DDIM steps (ITO §4: 25)", lo=1, hi=1000)
    encode_ratio: float = setting(1.0, "t_E / T (ITO §4: ratio 1)", lo=0, hi=1, lo_open=True)
    guidance_scale: float = setting(7.5, "classifier-free guidance (SD 1.5's default)", lo=0, hi=50)
    controlnet_scale: float = setting(1.0, "ControlNet conditioning scale (diffusers' default)", lo=0, hi=10)
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")

    def check(self) -> None:
        self.require_steps(encode_ratio=self.encode_ratio)


@register("controlnet", ControlNetEditConfig, layout=True)
@torch.no_grad()
def controlnet_edit(backbone, request: EditRequest, config: ControlNetEditConfig = ControlNetEditConfig(),
                    seed: int = 0) -> EditResult:
    conds = edit_conditions(backbone, request, config.negative_prompt, config.controlnet_scale)
    z0 = encode_image(backbone, request.image)
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    start = schedule.start_index(config.encode_ratio)
    invert_eps = GuidedNoise(backbone, conds.source_null, conds.source, 1.0)  # Eq. 2 of ITO, no CFG
    with phase("inversion", schedule.num_steps - start):
        inverted = ddim_invert(invert_eps, z0, schedule, start)
    decode_eps = GuidedNoise(backbone, conds.edit_null, conds.edit, config.guidance_scale)
    with phase("decoding", schedule.num_steps - start):
        z = ddim_sample(decode_eps, inverted[start], schedule, start)
    return EditResult(image=decode_latents(backbone, z)[0], mask=None,
                      intermediates={"inverted_latents": inverted, "latents": z},
                      provenance=provenance("controlnet", config, seed, backbone))

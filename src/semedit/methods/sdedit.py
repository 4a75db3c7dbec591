"""SDEdit (image-to-image): noise the input to an intermediate level and denoise it under the
target prompt. The baseline every paper compares against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.conditioning import Condition, GuidedNoise, decode_latents, encode_image, encode_text
from ..engine.counting import phase
from ..engine.ddim import ddim_sample, make_schedule, q_sample, seeded_noise
from .base import EditRequest, EditResult, MethodConfig, provenance, register, setting


@dataclass
class SDEditConfig(MethodConfig):
    strength: float = setting(0.5, "t0 / T; the MCDM paper compares SDEdit 0.5 and 0.8 (§4), pixel guidance t0 = 0.5",
                              lo=0, hi=1, lo_open=True)
    steps: int = setting(50, "DDIM steps over the whole schedule (int(steps * strength) are run)", lo=1, hi=1000)
    guidance_scale: float = setting(7.5, "classifier-free guidance (Stable Diffusion's default)", lo=0, hi=50)
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")

    def check(self) -> None:
        self.require_steps(strength=self.strength)


@register("sdedit", SDEditConfig, source=False)
@torch.no_grad()
def sdedit(backbone, request: EditRequest, config: SDEditConfig = SDEditConfig(), seed: int = 0) -> EditResult:
    z0 = encode_image(backbone, request.image)
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    start = schedule.start_index(config.strength)
    x = q_sample(z0, seeded_noise(z0.shape, seed, z0), schedule.alphas[start])  # q(x_t | x_0) at the start level
    null, text = encode_text(backbone, [config.negative_prompt, request.target_prompt]).chunk(2)
    eps = GuidedNoise(backbone, Condition(null), Condition(text), config.guidance_scale)
    with phase("denoising", schedule.num_steps - start):
        z = ddim_sample(eps, x, schedule, start)
    return EditResult(image=decode_latents(backbone, z)[0], mask=None,
                      intermediates={"noised_latents": x, "latents": z},
                      provenance=provenance("sdedit", config, seed, backbone))

"""Text-to-image from noise on the engine's parts (the work of diffusers' StableDiffusionPipeline and
StableDiffusionControlNetPipeline with a DDIM scheduler, eta 0): seeded Gaussian latents, DDIM under
classifier-free guidance, the VAE's decoder. Methods that start from a generated image (the target
image O_t of layered editing, the pair canvas of MCDM) and `semedit generate` use it."""

from __future__ import annotations

import numpy as np
import torch

from .conditioning import Condition, GuidedNoise, control_map, decode_latents, encode_text
from .counting import phase
from .ddim import Callback, ddim_sample, make_schedule, seeded_noise


def generate_latents(backbone, cond: Condition, null: Condition, steps: int = 50, guidance_scale: float = 7.5,
                     seed: int = 0, callback: Callback | None = None) -> torch.Tensor:
    """DDIM from seeded noise x_T (1, C, h, w) at the model's sample size, eps guided between `null` and
    `cond`. The noise is `torch.randn` from a CPU generator seeded with `seed`, as diffusers' pipelines draw
    it with `generator=torch.Generator().manual_seed(seed)`, so both start from the same x_T."""
    schedule = make_schedule(backbone.scheduler_config, steps)
    size = backbone.unet.config.sample_size
    like = torch.empty(0, device=backbone.device, dtype=backbone.dtype)
    x = seeded_noise((1, backbone.unet.config.in_channels, size, size), seed, like)  # DDIM's init sigma is 1
    with phase("generation", schedule.num_steps):
        return ddim_sample(GuidedNoise(backbone, null, cond, guidance_scale), x, schedule, callback=callback)


@torch.inference_mode()
def generate(backbone, prompt: str, negative_prompt: str = "", steps: int = 50, guidance_scale: float = 7.5,
             seed: int = 0, layouts: dict[str, np.ndarray] | None = None, controlnet_scale: float = 1.0) -> np.ndarray:
    """A uint8 HxWx3 image of `prompt`, following the layout maps {ControlNet name: uint8 map} if given
    (each ControlNet in both guidance branches, as diffusers' ControlNet pipeline runs it)."""
    controls = {name: (control_map(backbone, m), float(controlnet_scale)) for name, m in (layouts or {}).items()}
    null, text = encode_text(backbone, [negative_prompt, prompt]).chunk(2)
    z = generate_latents(backbone, Condition(text, controls), Condition(null, controls), steps, guidance_scale, seed)
    return decode_latents(backbone, z)[0]

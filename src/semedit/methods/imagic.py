"""Imagic (Kawar et al., "Imagic: Text-Based Real Image Editing with Diffusion Models"), the baseline the
LayerDiffusion paper builds on and compares with (§2, §4.2): the target text's embedding e_tgt optimised
to reconstruct the input (e_opt), the U-Net fine-tuned to reconstruct it under e_opt, then sampling from
noise under the interpolation eta * e_tgt + (1 - eta) * e_opt. One layer, no masks: the same engine
parts as LayerDiffusion (`engine.finetune`) over the whole picture.

Step counts and learning rates are those of diffusers' community Imagic pipeline (the reference the
LayerDiffusion issue names); eta = 0.7 is the value the LayerDiffusion paper takes from Imagic's
interpolation analysis (its §3.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.conditioning import Condition, GuidedNoise, decode_latents, encode_image, encode_text
from ..engine.counting import phase
from ..engine.ddim import ddim_sample, make_schedule, seeded_noise
from ..engine.finetune import DenoisingTarget, fine_tune, optimise_embeddings
from .base import EditRequest, EditResult, MethodConfig, provenance, register, setting


@dataclass
class ImagicConfig(MethodConfig):
    eta: float = setting(0.7, "eta of the interpolation eta * e_tgt + (1 - eta) * e_opt (LayerDiffusion §3.2.1, "
                              "after Imagic's analysis: 0.7)", lo=0, hi=2)
    embedding_steps: int = setting(500, "Adam steps optimising e_tgt towards the input (diffusers' community "
                                        "pipeline: 500)", lo=0, hi=100000)
    embedding_lr: float = setting(1e-3, "their learning rate (community pipeline: 1e-3)", lo=0, lo_open=True)
    finetune_steps: int = setting(1000, "Adam steps fine-tuning the U-Net under e_opt (community pipeline: 1000)",
                                  lo=0, hi=100000)
    finetune_lr: float = setting(2e-6, "their learning rate (community pipeline: 2e-6)", lo=0, lo_open=True)
    lora_rank: int | None = setting(None, "fine-tune LoRA adapters of this rank instead of the whole U-Net",
                                    lo=1, hi=1024)
    steps: int = setting(50, "DDIM steps from noise (community pipeline: 50)", lo=1, hi=1000)
    guidance_scale: float = setting(7.5, "classifier-free guidance (community pipeline: 7.5)", lo=0, hi=50)
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")


@register("imagic", ImagicConfig, source=False)
@torch.no_grad()
def imagic(backbone, request: EditRequest, config: ImagicConfig = ImagicConfig(), seed: int = 0) -> EditResult:
    """The target prompt describes the edited picture; no source prompt is needed."""
    z0 = encode_image(backbone, request.image)
    null, e_tgt = encode_text(backbone, [config.negative_prompt, request.target_prompt]).chunk(2)
    whole = [DenoisingTarget(z0)]
    with phase("text embedding optimisation", config.embedding_steps):
        e_opt, embedding_losses = optimise_embeddings(backbone, e_tgt, whole, config.embedding_steps,
                                                      config.embedding_lr, seed)
    with phase("model fine-tuning", config.finetune_steps):
        tuned, finetune_losses = fine_tune(backbone, e_opt, whole, config.finetune_steps, config.finetune_lr, seed,
                                           config.lora_rank)
    e_bar = config.eta * e_tgt + (1 - config.eta) * e_opt
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    with phase("generation", schedule.num_steps):
        z = ddim_sample(GuidedNoise(tuned, Condition(null), Condition(e_bar), config.guidance_scale),
                        seeded_noise(z0.shape, seed, z0), schedule)
    return EditResult(image=decode_latents(tuned, z)[0], mask=None,
                      intermediates={"embedding_losses": torch.tensor(embedding_losses).flatten(),
                                     "finetune_losses": torch.tensor(finetune_losses).flatten(), "latents": z},
                      provenance=provenance("imagic", config, seed, backbone))

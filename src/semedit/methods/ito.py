"""ITO: inference-time optimisation of latents with a masked preservation loss and a cosine guidance
loss towards a guidance image; edits by text, pose, scribble (ControlNet layouts), alone or combined.

Paper: papers/ito-optimisation-based-multimodal-editing.md. Three steps (§3.2 "Task Difficulty
Driven Modular Process", Fig. 1): (1) an edit mask from contrasting noise predictions under the
original and the edit condition (Eq. 7); (2) a guidance image: the ITO process with lambda = 1 on
a random-noise encoding of the input (skipped when lambda = 1, the "simple edit" mode), optionally
refined (supp. A.5); (3) the edit: DDIM inversion of the input to t_E (Eq. 2), decoding under the
edit condition with Adam updates of the latents in the first t_u steps on
(1 - lambda) L_G + lambda L_REC (Eq. 3-6).

Readings of the paper where it is ambiguous or inconsistent (each a config field where it is a choice):
- Eq. 4 reads ||m * y_t - (1 - m) * x_t||^2, which would pull y_t to zero inside the edit region
  and leave the outside unconstrained, against the text ("preservation of original content",
  "unconstrained flexibility in image regions that are valid edit regions", and the blending rule
  m * y + (1 - m) * x quoted next to it). We implement the evident intent ||(1 - m) * (y_t - x_t)||^2
  with m = 1 on the edit region: preserve outside, free inside.
- ||.||_2^2 is taken literally as a sum of squares (not a mean); with Adam the scale of one loss
  matters only relative to the other (Eq. 6).
- The losses (Eq. 3-6) are functions of the latents alone: no gradient flows through the U-Net, so
  the edit makes no U-Net backward pass (reported as `unet_backward` = 0).
- Eq. 2 writes eps(x_t, t) without a condition: we invert the input under its original condition
  (`inversion_condition="matching"`, as diffusers' DiffEdit `invert` does) or unconditionally ("null").
  "We first encode g_0 ... in similar fashion to the encoding process of x_0": the guidance image
  is inverted likewise, under the condition it depicts (the edit condition).
- Eq. 7, as §3.2 describes it: the input is encoded with random noise of seed s to x_E(s), the
  backward diffusion x_E(s) -> y_0(C, s) runs under C_0 and under C_EDIT, and the noise estimates
  of the two runs at the last timestep (t = 1 for 25 SD steps) are contrasted (`mask_mode="sampling"`).
  x_E is the edit's own encoding level t_E unless `mask_encode_ratio` says otherwise; the runs are
  classifier-free guided like the edit (the scale is not stated). `mask_mode="direct"` is the cheaper
  DiffEdit-style reading: the input noised straight to the mask timestep, one prediction per
  condition. Either map is averaged over n seeds, Gaussian-smoothed, min-max normalised and
  thresholded at tau (§4).
- The guidance image's preservation target: "our input image is encoded using random noise" - the
  reference latents x_t of its preservation loss are then the random-noise encodings
  sqrt(a_t) x_0 + sqrt(1 - a_t) eps of the input, one noise eps for all levels.
- Adam (§4) with k steps per timestep: a fresh optimiser at every updated timestep (y_t is a new
  variable each time). Updates happen at level t before y'_t goes into the U-Net for that step.
- Eq. 5's cosine is taken over the whole latent (`guidance_cosine="latent"`, as printed). With k = 1
  a fresh Adam's step is lr * sign(gradient), and that cosine's gradient (~1/|y_t| per entry) is far
  below the squared error's, so lambda in (0, 1) hardly changes the sign outside the mask and the
  sweep of Fig. 5 comes out flat. `guidance_cosine="pixel"` (a cosine along the channels at every
  latent position, summed) has gradients of the squared error's size, so lambda trades the two.
- The classifier-free guidance scale is not stated: 7.5 (Stable Diffusion v1.5's default; §4 uses SD 1.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.conditioning import Condition, EditConditions, GuidedNoise, decode_latents, encode_image, predict_noise
from ..engine.counting import phase
from ..engine.ddim import ddim_invert, ddim_sample, make_schedule, q_sample, seeded_noise
from ..engine.guidance import nested_guidance
from ..engine.masks import (check_mask_inputs, estimate_edit_mask, gaussian_blur, noise_difference, normalise, resize,
                            threshold, user_mask)
from ..engine.optimise import cosine_distance, masked_squared_error, optimise_latents
from .base import EditRequest, EditResult, MethodConfig, edit_conditions, provenance, register, setting


@dataclass
class ITOConfig(MethodConfig):
    steps: int = setting(25, "DDIM sampling steps (§4: 25)", lo=1, hi=1000)
    encode_ratio: float = setting(1.0, "t_E / T, depth of the DDIM inversion (§4: ratio 1, t_E = 25)",
                                  lo=0, hi=1, lo_open=True)
    lam: float = setting(0.6, "lambda of Eq. 6, preservation vs guidance; 1 = simple edit, no guidance image "
                              "(§3.2, §4: 0.6)", lo=0, hi=1)
    update_steps: int = setting(15, "t_u: latents are updated in the first t_u decoding steps (§3.2, §4: 15)",
                                lo=0, hi=1000)
    grad_steps: int = setting(1, "k: gradient steps per updated timestep (Eq. 3, §4: 1)", lo=0, hi=100)
    lr: float = setting(0.1, "gamma, the learning rate (Eq. 3, §4: Adam, 0.1)", lo=0, hi=10, lo_open=True)
    optimizer: str = setting("adam", "adam (§4) or sgd (Eq. 3's plain gradient step)", choices=("adam", "sgd"))
    guidance_cosine: str = setting("latent", "Eq. 5's cosine over the whole latent, or \"pixel\": per latent pixel, "
                                   "summed", choices=("latent", "pixel"))
    guidance_update_steps: int = setting(15, "t_u for the guidance image (§4: same as the edit; A.2 suggests 20)",
                                         lo=0, hi=1000)
    guidance_grad_steps: int = setting(1, "k for the guidance image (§4: 1; A.2 suggests 30)", lo=0, hi=100)
    refine_guidance: bool = setting(False, "refine the guidance image towards the input, lambda = 0 (supp. A.5; off by "
                                    "default)")
    refine_update_steps: int = setting(6, "t_u of the refinement (A.5: 6)", lo=0, hi=1000)
    refine_grad_steps: int = setting(1, "k of the refinement (A.5: 1)", lo=0, hi=100)
    guidance_scale: float = setting(7.5, "classifier-free guidance; not stated in the paper: SD 1.5's default (§4)",
                                    lo=0, hi=50)
    mask_samples: int = setting(10, "n seeds averaged in Eq. 7 (§4 follows DiffEdit: n = 10)", lo=1, hi=100)
    mask_mode: str = setting("sampling", "Eq. 7 after backward diffusions from x_E(s) (§3.2), or \"direct\" "
                             "(DiffEdit-style)", choices=("sampling", "direct"))
    mask_encode_ratio: float | None = setting(None, "level of x_E(s) in \"sampling\" mode; None = encode_ratio (§3.2)",
                                              lo=0, hi=1, lo_open=True)
    mask_step: int = setting(-1, "sampling-grid index of the mask timestep in \"direct\" mode: -1 = the last (Eq. 7)")
    mask_guidance_scale: float = setting(7.5, "CFG of the mask's predictions (not stated; as the edit and diffusers' "
                                         "DiffEdit)", lo=0, hi=50)
    mask_blur_kernel: int = setting(5, "Gaussian smoothing of the mask (§4; kernel not stated, sigma as torchvision's)",
                                    lo=1, hi=63)
    mask_threshold: float = setting(0.1, "tau, on the min-max normalised map (§3.2 Eq. 7, §4: 0.1)",
                                    lo=0, hi=1, hi_open=True)
    inversion_condition: str = setting("matching", "matching (input: original, guidance image: edit condition) or null "
                                       "(Eq. 2)", choices=("matching", "null"))
    inversion_guidance_scale: float = setting(1.0, "CFG during DDIM inversion (Eq. 2 has none)", lo=0, hi=50)
    controlnet_scale: float = setting(1.0, "ControlNet conditioning scale (not stated; diffusers' default)",
                                      lo=0, hi=10)
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")

    def check(self) -> None:
        self.require_steps(encode_ratio=self.encode_ratio, mask_encode_ratio=self.mask_encode_ratio)
        if not -self.steps <= self.mask_step < self.steps:
            raise ValueError(f"mask_step must index the {self.steps} sampling steps, got {self.mask_step}")
        if self.mask_blur_kernel % 2 == 0:
            raise ValueError(f"mask_blur_kernel must be a positive odd number, got {self.mask_blur_kernel}")

    def update(self, lam: float, update_steps: int, grad_steps: int) -> "ITOUpdate":
        """A phase of latent updates with this config's gamma, optimiser and cosine."""
        return ITOUpdate(lam, update_steps, grad_steps, self.lr, self.optimizer, self.guidance_cosine)


# --- losses and the latent update (§3.2) -----------------------------------------------------------

def preservation_loss(y_t: torch.Tensor, x_t: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """L_REC (Eq. 3-4): ||(1 - m) * (y_t - x_t)||^2, m = 1 on the edit region (no mask: everywhere).
    Eq. 4 as printed, ||m * y_t - (1 - m) * x_t||^2, contradicts its own text (see the module notes)."""
    return masked_squared_error(y_t, x_t, 1.0 if m is None else 1 - m)


def guidance_loss(y_t: torch.Tensor, g_t: torch.Tensor, over: str = "latent") -> torch.Tensor:
    """L_G (Eq. 5): 1 - cos(y_t, g_t), g_t the guidance image's encoding at the same level; the cosine
    over the whole latent (`over="latent"`, Eq. 5 as printed) or per latent pixel ("pixel")."""
    return cosine_distance(y_t, g_t, over)


def ito_loss(y_t, x_t, g_t, m, lam: float, cosine_over: str = "latent") -> torch.Tensor:
    """Eq. 6: (1 - lambda) L_G(y_t, g_t) + lambda L_REC(y_t, x_t, m); a term whose weight is zero is left out."""
    loss = y_t.new_zeros(())
    if lam < 1:
        loss = loss + (1 - lam) * guidance_loss(y_t, g_t, cosine_over)
    if lam > 0:
        loss = loss + lam * preservation_loss(y_t, x_t, m)
    return loss


def ito_update(y_t, x_t, g_t, m, lam: float, grad_steps: int, lr: float, optimizer: str = "adam",
               cosine_over: str = "latent") -> torch.Tensor:
    """y_t -> y'_t: k optimiser steps on Eq. 6 (Eq. 3 / 5 / 6; Adam with learning rate gamma, §4)."""
    return optimise_latents(y_t, lambda v: ito_loss(v, x_t, g_t, m, lam, cosine_over), grad_steps, lr, optimizer)


@dataclass(frozen=True)
class ITOUpdate:
    """One phase of latent updates (Eq. 3-6): lambda, t_u, k, gamma, the optimiser and Eq. 5's cosine."""
    lam: float
    update_steps: int
    grad_steps: int
    lr: float
    optimizer: str = "adam"
    cosine_over: str = "latent"


def ito_decode(eps_fn, y: torch.Tensor, schedule, start: int, update: ITOUpdate, mask=None,
               reference: dict | None = None, guide: dict | None = None) -> torch.Tensor:
    """DDIM decoding from level `start` (Eq. 1) with the ITO update of y_t before the U-Net call at
    each of the first `update.update_steps` levels (§3.2: "for the first t_u steps of the backwards
    diffusion process"); `reference` / `guide` map levels to x_t / g_t."""
    def before(level, y_t):
        if level - start >= update.update_steps or update.grad_steps == 0:
            return y_t
        x_t = None if reference is None else reference[level]
        g_t = None if guide is None else guide[level]
        return ito_update(y_t, x_t, g_t, mask, update.lam, update.grad_steps, update.lr, update.optimizer,
                          update.cosine_over)

    return ddim_sample(eps_fn, y, schedule, start, before_step=before)


# --- the three steps (Fig. 1) ----------------------------------------------------------------------

def edit_map_by_sampling(backbone, z0: torch.Tensor, schedule, start: int, conds: EditConditions, samples: int,
                         seed: int, guidance_scale: float = 1.0) -> torch.Tensor:
    """Eq. 7's raw edit map from two backward diffusions (§3.2): z0 is encoded with `samples` random
    noises to level `start` (x_E(s)), DDIM-sampled under C_0 and under C_EDIT, and the noise predictions
    of each run at the last sampling timestep are contrasted, |eps(x_1, 1, C_EDIT, s) - eps(x_1, 1, C_0, s)|,
    averaged over channels and seeds. The two runs go down side by side, every step's branches of both
    in one U-Net batch. Returns the (1, 1, h, w) map, not normalised."""
    check_mask_inputs(z0, samples)
    guided = float(guidance_scale) != 1.0
    runs = [[null, cond] if guided else [cond]
            for null, cond in ((conds.source_null, conds.source), (conds.edit_null, conds.edit))]
    last = {}

    def eps_fn(x, t):  # x: the C_0 run and the C_EDIT run stacked
        halves = x.chunk(2)
        preds = iter(predict_noise(backbone, [h for h, r in zip(halves, runs) for _ in r], t, sum(runs, [])))
        eps = [nested_guidance([next(preds) for _ in r], [guidance_scale] * (len(r) - 1)) for r in runs]
        last["eps"] = eps  # the prediction of the last timestep is what remains
        return torch.cat(eps)

    x_e = q_sample(z0, seeded_noise((samples, *z0.shape[1:]), seed, z0), schedule.alphas[start])
    ddim_sample(eps_fn, torch.cat([x_e, x_e]), schedule, start)
    return noise_difference(last["eps"][1], last["eps"][0], samples=samples)


def edit_mask(backbone, z0, conds: EditConditions, schedule, config: ITOConfig, seed: int):
    """Eq. 7: the binary latent edit mask (1, 1, h, w) and its soft map in [0, 1]. Text, layout or both:
    whatever differs between C_0 and C_EDIT drives the contrast."""
    args = (conds, config.mask_samples, seed, config.mask_guidance_scale)
    if config.mask_mode == "sampling":
        start = schedule.start_index(config.mask_encode_ratio or config.encode_ratio)  # x_E(s)
        with phase("mask (Eq. 7)", schedule.num_steps - start):
            diff = edit_map_by_sampling(backbone, z0, schedule, start, *args)
    else:
        with phase("mask (Eq. 7)", 1):
            diff = estimate_edit_mask(backbone, z0, schedule, config.mask_step % schedule.num_steps, *args)
    soft = normalise(gaussian_blur(diff, config.mask_blur_kernel), "minmax")  # smoothing (§4)
    return threshold(soft, config.mask_threshold), soft  # tau (§4)


@torch.no_grad()
def request_edit_mask(backbone, request: EditRequest, config: ITOConfig = ITOConfig(), seed: int = 0):
    """`edit_mask` of an EditRequest (its image and conditions), on the config's sampling grid."""
    request.validate(backbone.image_size, backbone.controlnets)
    conds = edit_conditions(backbone, request, config.negative_prompt, config.controlnet_scale)
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    return edit_mask(backbone, encode_image(backbone, request.image), conds, schedule, config, seed)


def _inversion_eps(backbone, null: Condition, cond: Condition, config: ITOConfig) -> GuidedNoise:
    if config.inversion_condition == "null":
        plain = Condition(null.text)
        return GuidedNoise(backbone, plain, plain, 1.0)
    return GuidedNoise(backbone, null, cond, config.inversion_guidance_scale)


def encode(backbone, z0, null: Condition, cond: Condition, schedule, start: int, config: ITOConfig) -> dict:
    """DDIM inversion (Eq. 2) of z0 to level t_E: {level: latent}."""
    return ddim_invert(_inversion_eps(backbone, null, cond, config), z0, schedule, start)


def guidance_image(backbone, z0, x: dict, conds: EditConditions, mask, schedule, start: int, config: ITOConfig,
                   seed: int) -> dict:
    """§3.2 "Guidance Image Generation": the ITO process with lambda = 1 (preservation only) on the
    input encoded with random noise, decoded under C_EDIT; then encoded like x_0 (Eq. 5: g_t for
    every level). With `refine_guidance`, supp. A.5: the ITO process with lambda = 0 on G (encoded
    by DDIM inversion), the input's x_t as reference, then encoded again.
    Returns {"g0", "g" (levels), "noised", "g0_unrefined"?}."""
    n = schedule.num_steps
    noise_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])  # independent of the mask's noise
    noise = seeded_noise(z0.shape, noise_seed, z0)
    noised = {level: q_sample(z0, noise, schedule.alphas[level]) for level in range(start, n + 1)}
    decode_eps = GuidedNoise(backbone, conds.edit_null, conds.edit, config.guidance_scale)
    g0 = ito_decode(decode_eps, noised[start], schedule, start,
                    config.update(1.0, config.guidance_update_steps, config.guidance_grad_steps), mask=mask,
                    reference=noised)
    g = encode(backbone, g0, conds.edit_null, conds.edit, schedule, start, config)
    out = {"g0": g0, "g": g, "noised": noised[start]}
    if config.refine_guidance:  # A.5: lambda = 0, input G, reference I
        g0_refined = ito_decode(decode_eps, g[start], schedule, start,
                                config.update(0.0, config.refine_update_steps, config.refine_grad_steps), guide=x)
        g_refined = encode(backbone, g0_refined, conds.edit_null, conds.edit, schedule, start, config)
        out.update(g0=g0_refined, g=g_refined, g0_unrefined=g0)
    return out


def ito_edit(backbone, z0: torch.Tensor, conds: EditConditions, config: ITOConfig, seed: int = 0,
             mask: torch.Tensor | None = None) -> EditResult:
    """The ITO edit of latent z0 (1, C, h, w) from C_0 to C_EDIT, with no check that they differ.
    `mask` (1, 1, h, w) binary on the latent grid replaces the estimated one."""
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    start = schedule.start_index(config.encode_ratio)  # level of t_E
    decode_steps = schedule.num_steps - start
    if mask is None:  # (1) the edit mask (Eq. 7)
        mask, soft = edit_mask(backbone, z0, conds, schedule, config, seed)
    else:
        soft = mask
    with phase("inversion (Eq. 2)", decode_steps):
        x = encode(backbone, z0, conds.source_null, conds.source, schedule, start, config)
    intermediates = {"mask_latent": mask, "mask_soft": soft, "inverted_latents": x}
    guide = None
    update_steps = min(config.update_steps, decode_steps)
    if config.lam < 1 and update_steps > 0 and config.grad_steps > 0:  # (2) the guidance image (lambda = 1 skips it)
        with phase("guidance image", decode_steps * (4 if config.refine_guidance else 2)):
            gi = guidance_image(backbone, z0, x, conds, mask, schedule, start, config, seed)
        guide = gi["g"]
        intermediates.update(guidance_image=decode_latents(backbone, gi["g0"])[0], guidance_latents=gi["g0"],
                             guidance_noised_latents=gi["noised"], guidance_inverted_latents=gi["g"])
        if "g0_unrefined" in gi:
            intermediates["guidance_image_unrefined"] = decode_latents(backbone, gi["g0_unrefined"])[0]
    edit_eps = GuidedNoise(backbone, conds.edit_null, conds.edit, config.guidance_scale)  # (3) the edit (Eq. 3-6)
    with phase("edit (Eq. 3-6)", decode_steps):
        y0 = ito_decode(edit_eps, x[start], schedule, start,
                        config.update(config.lam, update_steps, config.grad_steps), mask=mask, reference=x, guide=guide)
    up = resize(mask, (backbone.image_size,) * 2)[0, 0].float().cpu().numpy()
    intermediates.update(mask=up, latents=y0)
    prov = provenance("ito", config, seed, backbone)
    prov.update(unet_backward=0)  # the losses (Eq. 3-6) never reach the U-Net
    return EditResult(image=decode_latents(backbone, y0)[0], mask=up, intermediates=intermediates, provenance=prov)


@register("ito", ITOConfig, layout=True, mask=True)
@torch.no_grad()
def ito(backbone, request: EditRequest, config: ITOConfig = ITOConfig(), seed: int = 0) -> EditResult:
    """Conditions (§3.2, supp. A.4.1): a target prompt, a target pose or scribble, the map of any other
    ControlNet loaded by name (e.g. Hough lines, supp. A.4.1: --controlnet mlsd=DIR --control mlsd=P.png),
    or a prompt with layouts. The original condition is needed too, for the mask (Eq. 7) and the
    inversion: the source prompt for text edits, and the input's own layout map for layout edits
    (--source-pose / --source-control); for toon PNGs both are derived when omitted. A layout edit
    without a new prompt keeps the source prompt. An edit that changes nothing is refused.
    """
    conds = edit_conditions(backbone, request, config.negative_prompt, config.controlnet_scale)
    z0 = encode_image(backbone, request.image)
    mask = None if request.mask is None else user_mask(request.mask, tuple(z0.shape[-2:]), z0)
    return ito_edit(backbone, z0, conds, config, seed, mask)

"""Deterministic DDIM sampling and inversion as small pure functions over (eps_fn, latents, schedule).

Levels: a `Schedule` of N steps has sampling timesteps tau_0 > ... > tau_{N-1} (diffusers'
`DDIMScheduler.set_timesteps`, so the grids match diffusers exactly) and N + 1 noise levels
alpha_0 .. alpha_N, where alpha_i = alphas_cumprod[tau_i] and alpha_N is the level a full
sampling run ends at (`final_alpha_cumprod`: alphas_cumprod[0] for SD-style models, which do not
set alpha to one). A latent "at level i" has noise level alpha_i; x0 (the VAE latent) is at level N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]  # (latents, timestep) -> predicted noise
StepHook = Callable[[int, torch.Tensor], torch.Tensor]  # (level, latents) -> latents to go on with
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (level, latents, predicted x0): observes only


@dataclass(frozen=True)
class Schedule:
    timesteps: tuple[int, ...]  # tau_0 > ... > tau_{N-1}
    alphas: torch.Tensor  # N + 1 levels, float64

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def start_index(self, strength: float) -> int:
        """The level an edit of this strength starts from (diffusers' img2img/DiffEdit rule:
        int(N * strength) steps are run)."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength / encode ratio must be in (0, 1], got {strength}")
        if int(self.num_steps * strength) < 1:
            raise ValueError(f"{self.num_steps} steps at strength / encode ratio {strength} run no denoising step; "
                             f"give at least {steps_for(strength)} steps")
        return self.num_steps - min(int(self.num_steps * strength), self.num_steps)


def steps_for(strength: float) -> int:
    """The fewest steps with which `int(steps * strength)`, the steps an edit runs, is at least one."""
    if not strength * 1e9 >= 1:  # also catches a strength so small that 1 / strength overflows
        raise ValueError(f"strength / encode ratio {strength} is too small for any number of steps to run one")
    steps = max(1, int(1 / strength))
    while int(steps * strength) < 1:
        steps += 1
    return steps


def make_schedule(scheduler_config: dict, num_steps: int) -> Schedule:
    from diffusers import DDIMScheduler

    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(num_steps)
    ts = tuple(int(t) for t in sched.timesteps)
    train_steps = len(sched.alphas_cumprod)
    if max(ts) >= train_steps:  # the timestep grid runs past the model's schedule
        most = max(n for n in range(1, train_steps + 1)
                   if (n - 1) * (train_steps // n) + sched.config.steps_offset < train_steps)
        raise ValueError(f"{num_steps} steps do not fit this model's {train_steps}-step schedule; give at most {most}")
    ac = sched.alphas_cumprod.double()
    alphas = torch.cat([ac[list(ts)], sched.final_alpha_cumprod.double().reshape(1)])
    return Schedule(ts, alphas)


def alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    """alpha-bar of every training timestep (float64), for noising to a timestep of its own (Eq. 6 of
    the pixel-guidance paper) rather than to a level of a sampling schedule."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler_config).alphas_cumprod.double()


def ddim_update(x: torch.Tensor, eps: torch.Tensor, a_from, a_to) -> torch.Tensor:
    """Move x from noise level a_from to a_to along the predicted noise (ITO paper Eq. 1 / Eq. 2:
    the same update serves sampling, a_to > a_from, and inversion, a_to < a_from)."""
    a_from, a_to = float(a_from), float(a_to)
    x0 = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
    return a_to**0.5 * x0 + (1 - a_to) ** 0.5 * eps


def q_sample(x0: torch.Tensor, noise: torch.Tensor, a) -> torch.Tensor:
    """x0 noised to level alpha a with the given noise, q(x_t | x_0) (SDEdit's random-noise
    encoding; the ITO paper's "encoding using random noise", §3.2)."""
    a = float(a)
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise


def seeded_noise(shape, seed: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of `shape` from a CPU generator seeded with `seed` (reproducible on
    every device), in `like`'s dtype and on its device."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)),
                       dtype=like.dtype).to(like.device)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, a) -> torch.Tensor:
    """The clean latent that noise `eps` at level alpha `a` implies (DDIM Eq. 12's first term)."""
    a = float(a)
    return (x - (1 - a) ** 0.5 * eps) / a**0.5


def ddim_invert(eps_fn: EpsFn, x0: torch.Tensor, schedule: Schedule, stop_index: int = 0,
                eps_timestep: str = "current") -> dict[int, torch.Tensor]:
    """DDIM inversion of x0 (level N) up to level `stop_index`; returns {level: latent} for every
    level visited, x0 included.

    `eps_timestep="current"` evaluates the noise at the latent's own timestep (ITO paper Eq. 2;
    the pixel-guidance paper's Eq. 2-4); the first step from x0 uses tau_{N-1}, x0 having no
    timestep of its own. `"next"` evaluates it at the target timestep, as diffusers'
    `DDIMInverseScheduler` (and so its DiffEdit pipeline) does.
    """
    if eps_timestep not in ("current", "next"):
        raise ValueError(f"eps_timestep must be 'current' or 'next', got {eps_timestep!r}")
    n = schedule.num_steps
    if not 0 <= stop_index <= n:
        raise ValueError(f"stop_index must be in [0, {n}], got {stop_index}")
    ts, al = schedule.timesteps, schedule.alphas
    out = {n: x0}
    x = x0
    for level in range(n - 1, stop_index - 1, -1):  # from level+1 to level
        t = ts[level] if (eps_timestep == "next" or level == n - 1) else ts[level + 1]
        x = ddim_update(x, eps_fn(x, t), al[level + 1], al[level])
        out[level] = x
    return out


def ddim_sample(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule, start_index: int = 0,
                before_step: StepHook | None = None, after_step: StepHook | None = None,
                callback: Callback | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from level `start_index` to level N. `before_step(level, x)` may
    replace the latent at each level before its noise is predicted (inference-time latent updates:
    ITO paper Eq. 3-6, y_t -> y'_t, then y'_t goes into the U-Net); `after_step(level, x)` may replace
    the latent reaching each level (masked blending); `callback(level, x, predicted_x0)` only observes."""
    ts, al = schedule.timesteps, schedule.alphas
    for i in range(start_index, schedule.num_steps):
        if before_step is not None:
            x = before_step(i, x)
        eps = eps_fn(x, ts[i])
        if callback is not None:
            callback(i, x, predict_x0(x, eps, al[i]))
        x = ddim_update(x, eps, al[i], al[i + 1])
        if after_step is not None:
            x = after_step(i + 1, x)
    return x


def ddpm_posterior(x_t: torch.Tensor, x0: torch.Tensor, a_t, a_prev) -> tuple[torch.Tensor, float]:
    """Mean and variance of q(x_prev | x_t, x0) between two (possibly strided) levels (DDPM Eq. 7;
    the pixel-guidance paper's Eq. 5 shifts this mean by the classifier gradient)."""
    a_t, a_prev = float(a_t), float(a_prev)
    beta = 1 - a_t / a_prev  # the strided step's beta
    mean = (a_prev**0.5 * beta / (1 - a_t)) * x0 + ((a_t / a_prev) ** 0.5 * (1 - a_prev) / (1 - a_t)) * x_t
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean, var


def ddpm_sample(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule, start_index: int = 0,
                before_step: StepHook | None = None, after_step: StepHook | None = None,
                callback: Callback | None = None, seed: int = 0,
                guidance: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
    """Stochastic DDPM (ancestral) sampling from level `start_index` to level N along the schedule's
    levels: x_prev ~ N(mu + Sigma g, Sigma), mu and Sigma of q(x_prev | x_t, predicted x0) (DDPM Eq. 6-7;
    the pixel-guidance paper Eq. 1). With `guidance(x, t) -> (eps, g)`, the noise prediction comes with g,
    the scaled gradient of log p(y | x_t) that shifts the mean (classifier guidance, the pixel-guidance
    paper Eq. 5 / 9); without it, g = 0. The step noise is drawn from one generator seeded with `seed`;
    no noise is added on the last step (to level N)."""
    ts, al = schedule.timesteps, schedule.alphas
    gen = torch.Generator().manual_seed(int(seed))
    for i in range(start_index, schedule.num_steps):
        if before_step is not None:
            x = before_step(i, x)
        eps, g = guidance(x, ts[i]) if guidance is not None else (eps_fn(x, ts[i]), None)
        x0 = predict_x0(x, eps, al[i])
        if callback is not None:
            callback(i, x, x0)
        mean, var = ddpm_posterior(x, x0, al[i], al[i + 1])
        if g is not None:
            mean = mean + var * g
        noise = torch.randn(tuple(x.shape), generator=gen, dtype=x.dtype).to(x.device)
        x = mean + (var**0.5 * noise if i < schedule.num_steps - 1 else 0.0)
        if after_step is not None:
            x = after_step(i + 1, x)
    return x


def scheduler_sample(eps_fn: EpsFn, x: torch.Tensor, schedule, start_index: int = 0,
                     before_step: StepHook | None = None, after_step: StepHook | None = None,
                     callback: Callback | None = None) -> torch.Tensor:
    """`ddim_sample`'s contract with any diffusers scheduler as `schedule` (its timesteps set): UniPC, as
    the MCDM paper uses with 20 steps (supp. §1.2-1.3), DPM-Solver, ..."""
    for i, t in enumerate(schedule.timesteps[start_index:], start=start_index):
        if before_step is not None:
            x = before_step(i, x)
        eps = eps_fn(schedule.scale_model_input(x, t), int(t))
        if callback is not None:
            callback(i, x, predict_x0(x, eps, schedule.alphas_cumprod[int(t)]))
        x = schedule.step(eps, t, x).prev_sample
        if after_step is not None:
            x = after_step(i + 1, x)
    return x

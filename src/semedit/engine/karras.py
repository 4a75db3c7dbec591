"""The stochastic sampler of Karras et al. (EDM, "Elucidating the design space of diffusion-based generative
models", Algorithm 2), which diffusers shipped as the "Stochastic Karras VE" scheduler and the MCDM paper
generates its pairs with (supp. §1.1): Heun steps over sigmas spaced with rho = 7 (EDM Eq. 5), each step first
adding noise that raises sigma by a factor 1 + gamma ("churn").

An epsilon-predicting VP model is run in EDM's variables: x = x_vp * sqrt(1 + sigma^2), and the derivative
(x - D(x, sigma)) / sigma is the model's epsilon at x_vp and the timestep whose sigma is nearest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ddim import Callback, EpsFn, alphas_cumprod


@dataclass(frozen=True)
class KarrasSchedule:
    sigmas: torch.Tensor  # sigma_0 > ... > sigma_{N-1} > sigma_N = 0, float64
    model_sigmas: torch.Tensor  # sigma of every training timestep, float64

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def timestep_of(self, sigma: float) -> int:
        return int((self.model_sigmas - float(sigma)).abs().argmin())


def make_karras_schedule(scheduler_config: dict, num_steps: int, rho: float = 7.0) -> KarrasSchedule:
    """`num_steps` sigmas from the model's largest to its smallest, EDM Eq. 5, then 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    a = alphas_cumprod(scheduler_config)
    model_sigmas = ((1 - a) / a).sqrt()
    lo, hi = float(model_sigmas[0]) ** (1 / rho), float(model_sigmas[-1]) ** (1 / rho)
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)  # one step: sigma_max alone
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return KarrasSchedule(torch.cat([sigmas, sigmas.new_zeros(1)]), model_sigmas)


@dataclass(frozen=True)
class Churn:
    """Algorithm 2's stochasticity; the values are diffusers' KarrasVeScheduler defaults."""
    s_churn: float = 80.0
    s_min: float = 0.05
    s_max: float = 50.0
    s_noise: float = 1.007


def karras_sample(eps_fn: EpsFn, x_vp: torch.Tensor, schedule: KarrasSchedule, churn: Churn = Churn(),
                  generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """From x_vp, unit-variance noise, to a clean latent. `generator` (CPU) draws the churn noise;
    `callback(i, x_vp, predicted_x0)` only observes."""
    sig, n = schedule.sigmas, schedule.num_steps

    def derivative(x, sigma):
        s = float(sigma)
        return eps_fn(x / (1 + s * s) ** 0.5, schedule.timestep_of(s))

    x = x_vp * float(sig[0])  # EDM's x_0 = sigma_0 * n (as k-diffusion starts a VP model)
    for i in range(n):
        s_i, s_next = float(sig[i]), float(sig[i + 1])
        gamma = min(churn.s_churn / n, 2**0.5 - 1) if churn.s_min <= s_i <= churn.s_max else 0.0
        s_hat = s_i * (1 + gamma)
        if gamma > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + (s_hat**2 - s_i**2) ** 0.5 * churn.s_noise * noise
        d = derivative(x, s_hat)
        if callback is not None:
            callback(i, x / (1 + s_hat**2) ** 0.5, x - s_hat * d)
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:  # Heun's correction
            x_next = x + (s_next - s_hat) * (d + derivative(x_next, s_next)) / 2
        x = x_next
    return x

import pytest
import torch

from semedit.engine.ddim import ddim_invert, ddim_sample, ddim_update, ddpm_posterior, make_schedule
from semedit.models.toon64 import SCHEDULER_CONFIG


def eps_fn(x, t):  # a deterministic stand-in for a U-Net: depends on the latent and the timestep
    return 0.3 * torch.tanh(x) + 0.001 * t


@pytest.fixture
def x0():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_sampling_matches_diffusers_ddim(x0):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(SCHEDULER_CONFIG)
    sched.set_timesteps(10)
    s = make_schedule(SCHEDULER_CONFIG, 10)
    assert s.timesteps == tuple(int(t) for t in sched.timesteps)
    x = x0.clone()
    for t in sched.timesteps[3:]:
        x = sched.step(eps_fn(x, int(t)), t, x).prev_sample
    assert torch.allclose(ddim_sample(eps_fn, x0, s, start_index=3), x, atol=1e-6)


def test_inversion_next_matches_diffusers_inverse_scheduler(x0):
    from diffusers import DDIMInverseScheduler

    inv = DDIMInverseScheduler.from_config(SCHEDULER_CONFIG)
    inv.set_timesteps(10)
    s = make_schedule(SCHEDULER_CONFIG, 10)
    x = x0.clone()
    for t in inv.timesteps[:6]:  # six steps up: level 10 -> level 4
        x = inv.step(eps_fn(x, int(t)), t, x).prev_sample
    lat = ddim_invert(eps_fn, x0, s, stop_index=4, eps_timestep="next")
    assert sorted(lat) == list(range(4, 11)) and torch.equal(lat[10], x0)
    assert torch.allclose(lat[4], x, atol=1e-6)


def test_inversion_then_sampling_recovers_x0_when_eps_is_exact(x0):
    s = make_schedule(SCHEDULER_CONFIG, 25)
    const = lambda x, t: torch.full_like(x, 0.2)  # noqa: E731  (DDIM is exactly invertible for it)
    lat = ddim_invert(const, x0, s, stop_index=0)
    assert torch.allclose(ddim_sample(const, lat[0], s), x0, atol=1e-9)
    # with a latent-dependent eps, the usual inversion drift is small over 25 steps
    lat = ddim_invert(eps_fn, x0, s, stop_index=s.start_index(0.5))
    back = ddim_sample(eps_fn, lat[s.start_index(0.5)], s, start_index=s.start_index(0.5))
    assert (back - x0).abs().max() < 0.1 < x0.abs().mean()


def test_after_step_sees_every_level(x0):
    s = make_schedule(SCHEDULER_CONFIG, 5)
    seen = []
    ddim_sample(eps_fn, x0, s, start_index=2, after_step=lambda level, x: seen.append(level) or x)
    assert seen == [3, 4, 5]
    with pytest.raises(ValueError, match="strength"):
        s.start_index(0.0)
    assert s.start_index(1.0) == 0 and s.start_index(0.4) == 3


def test_ddpm_posterior_matches_diffusers(x0):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    t = 500
    ac = sched.alphas_cumprod.double()
    pred_x0 = torch.tanh(x0)
    eps = (x0 - ac[t] ** 0.5 * pred_x0) / (1 - ac[t]) ** 0.5
    ref = sched.step(eps.float(), t, x0.float(), generator=torch.Generator().manual_seed(0))
    mean, var = ddpm_posterior(x0, pred_x0, ac[t], ac[t - 1])
    assert var == pytest.approx(float(sched._get_variance(t)), rel=1e-5)
    noise = ref.prev_sample.double() - mean
    assert noise.std().item() == pytest.approx(var**0.5, rel=0.05)  # same mean, the rest is the sampled noise
    assert torch.allclose(ddim_update(x0, eps, ac[t], ac[t]), x0, atol=1e-9)


def test_nested_guidance_general_form():
    from semedit.engine.guidance import composed_guidance, nested_guidance

    g = torch.Generator().manual_seed(1)
    e0, e1, e2 = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    assert torch.allclose(nested_guidance([e0, e1, e2], [1.0, 1.0]), e2)  # all scales 1: fully conditioned
    assert torch.allclose(nested_guidance([e0, e1], [7.5]), e0 + 7.5 * (e1 - e0))  # ordinary CFG
    assert torch.allclose(nested_guidance([e0, e1, e2], [3.0, 0.0]), e0 + 3 * (e1 - e0))
    with pytest.raises(ValueError, match="one scale per condition"):
        nested_guidance([e0, e1], [1.0, 2.0])
    left = torch.zeros(1, 1, 4, 4)
    left[..., :2] = 1
    out = composed_guidance([e0, e1, e2], [0.1, 0.9, 0.9], [1.0, left, 1 - left])
    assert torch.allclose(out[..., :2], 0.1 * e0[..., :2] + 0.9 * e1[..., :2])
    assert torch.allclose(out[..., 2:], 0.1 * e0[..., 2:] + 0.9 * e2[..., 2:])


def test_latent_optimisation():
    from semedit.engine.optimise import latent_gradient, optimise_latents

    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.zeros_like(x)
    loss = lambda v: ((v - target) ** 2).sum()  # noqa: E731
    with torch.no_grad():  # works inside the samplers' no_grad
        assert torch.allclose(latent_gradient(x, loss), 2 * x)
        y = optimise_latents(x, loss, steps=1, lr=0.1)
    assert torch.allclose(y, x - 0.1 * torch.sign(x), atol=1e-6)  # Adam's first step: lr * sign(grad)
    assert optimise_latents(x, loss, steps=0, lr=0.1) is x
    assert loss(optimise_latents(x, loss, steps=50, lr=0.1)) < 0.1 * loss(x)
    assert not x.requires_grad


def test_before_step_replaces_the_latent_going_into_the_model(x0):
    from semedit.engine.ddim import q_sample, seeded_noise

    s = make_schedule(SCHEDULER_CONFIG, 5)
    seen, fed = [], []
    record = lambda x, t: fed.append(x.clone()) or eps_fn(x, t)  # noqa: E731
    out = ddim_sample(record, x0, s, start_index=2, before_step=lambda level, x: seen.append(level) or x + 1)
    assert seen == [2, 3, 4] and torch.equal(fed[0], x0 + 1)
    plain = ddim_sample(eps_fn, x0, s, start_index=2)
    assert not torch.allclose(out, plain)
    assert torch.equal(ddim_sample(eps_fn, x0, s, start_index=2, before_step=lambda level, x: x), plain)
    n = seeded_noise(x0.shape, 3, x0)
    assert n.dtype == x0.dtype and torch.equal(n, seeded_noise(x0.shape, 3, x0))
    a = float(s.alphas[1])
    assert torch.allclose(q_sample(x0, n, a), a**0.5 * x0 + (1 - a) ** 0.5 * n)


def test_masked_and_cosine_losses():
    from semedit.engine.optimise import cosine_distance, latent_gradient, masked_squared_error

    g = torch.Generator().manual_seed(0)
    y, x = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    w = torch.zeros(2, 1, 4, 4)
    w[..., :2] = 1
    assert float(masked_squared_error(y, x)) == pytest.approx(float(((y - x) ** 2).sum()), rel=1e-6)
    grad = latent_gradient(y, lambda v: masked_squared_error(v, x, w))
    assert torch.equal(grad[..., 2:], torch.zeros_like(grad[..., 2:]))  # zero weight: exactly zero gradient
    assert torch.allclose(grad[..., :2], 2 * (y - x)[..., :2])
    assert float(cosine_distance(y, 2 * y)) == pytest.approx(0, abs=1e-6)  # summed over the batch
    assert float(cosine_distance(y, -y)) == pytest.approx(4, abs=1e-5)
    cg = latent_gradient(y, lambda v: cosine_distance(v, x))
    assert torch.allclose((cg * y).sum(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)  # scale-invariant: grad ⟂ y


def test_cosine_distance_per_pixel():
    from semedit.engine.optimise import cosine_distance, latent_gradient

    g = torch.Generator().manual_seed(1)
    y, x = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    scaled = y * torch.rand(2, 1, 4, 4, generator=g).add(0.5)  # each pixel's vector rescaled: same direction
    assert float(cosine_distance(y, scaled, over="pixel")) == pytest.approx(0, abs=1e-5)
    assert float(cosine_distance(y, scaled)) > 1e-3  # the whole-latent cosine sees the change
    assert float(cosine_distance(y, -y, over="pixel")) == pytest.approx(2 * 2 * 16, abs=1e-4)
    cg = latent_gradient(y, lambda v: cosine_distance(v, x, over="pixel"))
    assert torch.allclose((cg * y).sum(dim=1), torch.zeros(2, 4, 4), atol=1e-5)  # grad ⟂ y at every pixel
    with pytest.raises(ValueError, match="over"):
        cosine_distance(y, x, over="nope")

import pytest
import torch

from semedit.engine.masks import blend, dilate, gaussian_blur, noise_difference, normalise, resize, threshold, union


def test_noise_difference_averages_seeds_and_channels():
    a = torch.zeros(6, 4, 8, 8)
    b = torch.zeros(6, 4, 8, 8)
    b[:3, :, 2:4, 2:4] = 1.0  # first image, 3 seeds: a square differs
    b[3:, 0, 5, 5] = 4.0  # second image: one pixel in one channel
    m = noise_difference(a, b, samples=3)
    assert m.shape == (2, 1, 8, 8)
    assert torch.allclose(m[0, 0, 2:4, 2:4], torch.ones(2, 2)) and m[0].sum() == 4
    assert m[1, 0, 5, 5] == 1.0 and m[1].sum() == 1
    with pytest.raises(ValueError, match="multiple"):
        noise_difference(a, b, samples=4)


def test_normalise_threshold_blur_dilate_resize():
    m = torch.zeros(1, 1, 8, 8)
    m[..., 3:5, 3:5] = 2.0
    n = normalise(m)
    assert n.max() == 1 and n.min() == 0
    c = normalise(m, "mean_clamp", 3.0)  # mean 0.125 -> clamp at 0.375
    assert torch.allclose(c.max(), torch.tensor(1.0)) and threshold(c, 0.5).sum() == 4
    b = gaussian_blur(n, 5)
    assert float(b.sum()) == pytest.approx(float(n.sum()), rel=0.05) and b[..., 2, 3] > 0 and b.max() < 1
    assert torch.equal(dilate(threshold(n, 0.5), 1)[0, 0, 2:6, 2:6], torch.ones(4, 4))
    assert dilate(threshold(n, 0.5), 1).sum() == 16
    small = resize(threshold(n, 0.5), (4, 4))
    assert small.sum() == 4  # any pixel of a cell marks the cell (3..4 touch cells 1 and 2)
    assert resize(small, (8, 8)).sum() == 16
    assert union(small, torch.zeros(1, 1, 4, 4)).sum() == 4
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(n, 4)
    with pytest.raises(ValueError, match="integer factor"):
        resize(n, (3, 3))


def test_blend_keeps_the_outside_of_the_mask():
    x, src = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, 4:] = 1
    out = blend(x, src, mask)
    assert torch.equal(out[..., :4], src[..., :4]) and torch.equal(out[..., 4:], x[..., 4:])


def test_estimate_edit_mask_contrasts_two_conditions_in_one_batch(tiny):
    from semedit.engine.conditioning import Condition, EditConditions, encode_text, predict_noise
    from semedit.engine.counting import count_network_calls
    from semedit.engine.ddim import make_schedule
    from semedit.engine.masks import estimate_edit_mask

    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s = make_schedule(tiny.scheduler_config, 5)
    null, a, b = encode_text(tiny, ["", "a cartoon man", "a cartoon woman"]).chunk(3)
    ca, cb, nc = Condition(a), Condition(b), Condition(null)
    with torch.no_grad():
        with count_network_calls(tiny) as calls:
            diff = estimate_edit_mask(tiny, z0, s, 4, EditConditions(ca, cb, nc), samples=3, seed=7)
        noise = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(7))
        al = float(s.alphas[4])
        x = al**0.5 * z0 + (1 - al) ** 0.5 * noise  # the last timestep (t = 1 for 5 steps)
        ea, eb = predict_noise(tiny, x, s.timesteps[4], [ca, cb])
        assert s.timesteps[4] == 1 and (calls.unet_evaluations, calls.unet_calls) == (2 * 3, 1)
        assert diff.shape == (1, 1, 8, 8)
        assert torch.allclose(diff, (eb - ea).abs().mean(1, keepdim=True).mean(0, keepdim=True), atol=1e-6)
        # guided: one shared null branch is evaluated once (3 branches), and scale g multiplies the contrast
        with count_network_calls(tiny) as calls:
            guided = estimate_edit_mask(tiny, z0, s, 4, EditConditions(ca, cb, nc), 3, 7, guidance_scale=7.5)
        assert calls.unet_evaluations == 3 * 3 and torch.allclose(guided, 7.5 * diff, rtol=1e-3, atol=1e-5)
        # a null branch of its own for the edit (the layouts differ): four branches, the same contrast here
        with count_network_calls(tiny) as calls:
            own = estimate_edit_mask(tiny, z0, s, 4, EditConditions(ca, cb, nc, Condition(null)), 3, 7,
                                     guidance_scale=7.5)
        assert calls.unet_evaluations == 4 * 3 and torch.allclose(own, guided, atol=1e-5)
        same = estimate_edit_mask(tiny, z0, s, 4, EditConditions(ca, ca, nc), 3, 7)
        assert same.abs().max() < 1e-5 < diff.abs().max()  # equal rows of one U-Net batch may differ in the last bits
    with pytest.raises(ValueError, match="batch 1"):
        estimate_edit_mask(tiny, z0.repeat(2, 1, 1, 1), s, 4, EditConditions(ca, cb, nc), 3, 7)


def test_edit_map_by_sampling_contrasts_the_last_predictions_of_two_runs(tiny):
    """ITO Eq. 7 as §3.2 describes it: x_E(s) sampled down under each condition, the noise
    predictions at the last timestep contrasted."""
    from semedit.engine.conditioning import Condition, EditConditions, GuidedNoise, encode_text
    from semedit.engine.counting import count_network_calls
    from semedit.engine.ddim import ddim_update, make_schedule
    from semedit.methods.ito import edit_map_by_sampling

    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s = make_schedule(tiny.scheduler_config, 5)
    null, a, b = encode_text(tiny, ["", "a cartoon man", "a cartoon woman"]).chunk(3)
    ca, cb, nc = Condition(a), Condition(b), Condition(null)
    with torch.no_grad():
        with count_network_calls(tiny) as calls:
            diff = edit_map_by_sampling(tiny, z0, s, 2, EditConditions(ca, cb, nc), 3, 7, 7.5)
        # 2 runs x 3 steps x 3 seeds x 2 branches, one U-Net call a step
        assert (calls.unet_evaluations, calls.unet_calls) == (2 * 3 * 3 * 2, 3) and diff.shape == (1, 1, 8, 8)
        al = float(s.alphas[2])
        x_e = al**0.5 * z0 + (1 - al) ** 0.5 * torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(7))
        last = []
        for c in (ca, cb):  # by hand: levels 2 -> 4, then the prediction at the last timestep
            eps_fn, x = GuidedNoise(tiny, nc, c, 7.5), x_e
            for i in (2, 3):
                x = ddim_update(x, eps_fn(x, s.timesteps[i]), s.alphas[i], s.alphas[i + 1])
            last.append(eps_fn(x, s.timesteps[4]))
        assert torch.allclose(diff, (last[1] - last[0]).abs().mean(1, keepdim=True).mean(0, keepdim=True), atol=1e-5)
        same = edit_map_by_sampling(tiny, z0, s, 2, EditConditions(ca, ca, nc), 3, 7)
        assert same.abs().max() < 1e-5 < diff.abs().max()  # equal rows of one U-Net batch may differ in the last bits

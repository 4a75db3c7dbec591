"""ITO (papers/ito-optimisation-based-multimodal-editing.md) on the tiny random backbone: the losses,
the reconstruction special case, the simple-edit mode, condition checks, U-Net counts, masks."""

import dataclasses

import numpy as np
import pytest
import torch

from semedit.engine.conditioning import Condition, GuidedNoise, decode_latents, encode_image, encode_text
from semedit.engine.ddim import ddim_invert, ddim_sample, make_schedule
from semedit.methods import REGISTRY, EditRequest, make_config, run_edit
from semedit.engine.conditioning import EditConditions
from semedit.engine.counting import count_network_calls
from semedit.methods.base import edit_conditions
from semedit.methods.ito import (ITOConfig, edit_mask, guidance_loss, ito_edit, ito_update,
                                 preservation_loss)

SMALL = dict(steps=4, mask_samples=2, update_steps=2, guidance_update_steps=2)


def _image(seed=0):
    return (np.random.default_rng(seed).random((16, 16, 3)) * 255).astype(np.uint8)


def _text_request():
    return EditRequest(_image(), "a cartoon woman, laughing", source_prompt="a cartoon woman, neutral expression")


def _pose(x0):
    """A pose-like drawing: a white stick figure whose head sits at column x0."""
    p = np.zeros((16, 16, 3), np.uint8)
    p[2:6, x0:x0 + 4] = 255  # head
    p[6:14, 7:9] = 255  # body
    return p


@pytest.fixture(scope="module")
def layout_bb(tiny):
    """The tiny backbone with small random ControlNets named pose and scribble (a copy: the shared
    fixture is left as it is)."""
    from diffusers import ControlNetModel

    nets = {}
    for i, name in enumerate(("pose", "scribble")):
        torch.manual_seed(10 + i)
        cn = ControlNetModel.from_unet(tiny.unet, conditioning_embedding_out_channels=(16, 32)).eval()
        with torch.no_grad():  # a fresh ControlNet ignores its map and outputs zero (zero convolutions)
            for p in [*cn.controlnet_down_blocks.parameters(), *cn.controlnet_mid_block.parameters(),
                      *cn.controlnet_cond_embedding.conv_out.parameters()]:
                p.normal_(0, 0.1)
        nets[name] = cn.requires_grad_(False)
    return dataclasses.replace(tiny, controlnets=nets)


def test_registered_with_the_papers_defaults():
    assert REGISTRY["ito"].config is ITOConfig and REGISTRY["ito"].layout  # takes ControlNet maps
    c = make_config("ito")
    # §4: 25 steps, encode ratio 1, lambda 0.6, t_u 15, k 1, Adam lr 0.1, tau 0.1; A.5: t_u 6, k 1
    assert (c.steps, c.encode_ratio, c.lam, c.update_steps, c.grad_steps, c.lr, c.optimizer, c.mask_threshold) == \
        (25, 1.0, 0.6, 15, 1, 0.1, "adam", 0.1)
    assert (c.refine_guidance, c.refine_update_steps, c.refine_grad_steps) == (False, 6, 1)
    with pytest.raises(ValueError, match="lam"):
        ITOConfig(lam=1.5)
    with pytest.raises(ValueError, match="mask_step"):
        ITOConfig(steps=4, mask_step=4)


def test_preservation_loss_without_weight_leaves_latents_unchanged():
    g = torch.Generator().manual_seed(0)
    y, x = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    # the edit mask m covers everything: the preservation weight (1 - m) is zero, so is the gradient
    everywhere = torch.ones(1, 1, 8, 8)
    with torch.no_grad():
        out = ito_update(y, x, None, everywhere, lam=1.0, grad_steps=3, lr=0.1)
    assert torch.equal(out, y)
    # half the latent is the edit region: only the other half moves, towards x (Adam: lr per step)
    half = torch.zeros(1, 1, 8, 8)
    half[..., 4:] = 1
    out = ito_update(y, x, None, half, lam=1.0, grad_steps=1, lr=0.1)
    assert torch.equal(out[..., 4:], y[..., 4:])
    assert torch.allclose((out - y)[..., :4].abs(), torch.full_like(y[..., :4], 0.1), atol=1e-5)
    assert torch.equal(torch.sign(out - y)[..., :4], torch.sign(x - y)[..., :4])  # each towards x
    # the losses themselves: Eq. 4 (as intended) and Eq. 5
    assert preservation_loss(y, x, everywhere) == 0 and preservation_loss(x, x) == 0
    assert float(preservation_loss(y, x)) == pytest.approx(float(((y - x) ** 2).sum()))
    assert float(guidance_loss(y, 3 * y)) == pytest.approx(0, abs=1e-6)
    assert float(guidance_loss(y, -y)) == pytest.approx(2, abs=1e-6)


def test_lambda_balances_the_losses_with_the_per_pixel_cosine():
    """Adam's first step is lr * sign(gradient): with the whole-latent cosine (Eq. 5 as printed) its
    gradient is far smaller than the squared error's, so lambda in (0, 1) barely matters outside the
    mask; per latent pixel the two are of one size and lambda trades preservation for guidance."""
    g = torch.Generator().manual_seed(0)
    y, d, gt = (torch.randn(1, 4, 16, 16, generator=g) for _ in range(3))
    x = y + 0.3 * d  # decoding starts at y = x: y is a small step away from x when it is updated
    m = torch.zeros(1, 1, 16, 16)
    m[..., 8:] = 1
    out = {(over, lam): ito_update(y, x, gt, m, lam, grad_steps=1, lr=0.1, cosine_over=over)
           for over in ("latent", "pixel") for lam in (0.2, 0.8)}

    def changed(a, b):  # share of latent entries outside the edit region that moved differently
        return float(((a - b)[..., :8].abs() > 1e-3).float().mean())

    assert changed(out["latent", 0.2], out["latent", 0.8]) < 0.02
    assert changed(out["pixel", 0.2], out["pixel", 0.8]) > 0.2
    err = {lam: float(((out["pixel", lam] - x)[..., :8] ** 2).sum()) for lam in (0.2, 0.8)}
    cos = {lam: float(torch.nn.functional.cosine_similarity(out["pixel", lam][..., :8], gt[..., :8]).mean())
           for lam in (0.2, 0.8)}
    assert err[0.8] < err[0.2] and cos[0.2] > cos[0.8]  # more lambda: closer to x; less: closer to g


def _same_conditions(bb, prompt):
    null, text = encode_text(bb, ["", prompt]).chunk(2)
    src, nc = Condition(text), Condition(null)
    return EditConditions(src, src, nc), null, text


def test_no_updates_and_no_change_is_the_ddim_reconstruction(tiny):
    prompt = "a cartoon woman, neutral expression"
    conds, null, text = _same_conditions(tiny, prompt)
    with torch.no_grad():
        z0 = encode_image(tiny, _image())
        res = ito_edit(tiny, z0, conds, ITOConfig(steps=6, mask_samples=2, update_steps=0), seed=0)
        # independently: DDIM inversion to t_E = T (ratio 1) without CFG, DDIM decoding with CFG 7.5
        s = make_schedule(tiny.scheduler_config, 6)
        inv = ddim_invert(GuidedNoise(tiny, Condition(null), Condition(text), 1.0), z0, s, 0)
        ref = ddim_sample(GuidedNoise(tiny, Condition(null), Condition(text), 7.5), inv[0], s, 0)
        ref_image = decode_latents(tiny, ref)[0]
    assert torch.allclose(res.intermediates["latents"], ref, atol=1e-6)
    assert np.array_equal(res.image, ref_image)
    assert torch.allclose(res.intermediates["inverted_latents"][0], inv[0], atol=1e-6)
    assert "guidance_image" not in res.intermediates  # t_u = 0: nothing would use it
    assert res.mask.sum() == 0  # equal conditions: no noise difference, an empty edit mask
    # the updates do act: preservation updates on the same input move the latents off the reconstruction
    with torch.no_grad():
        moved = ito_edit(tiny, z0, conds, ITOConfig(steps=6, mask_samples=2, update_steps=3, lam=1.0), seed=0)
    assert not torch.allclose(moved.intermediates["latents"], ref, atol=1e-3)


def test_lambda_one_skips_the_guidance_image(tiny):
    full = run_edit("ito", tiny, _text_request(), ITOConfig(**SMALL), seed=1)
    simple = run_edit("ito", tiny, _text_request(), ITOConfig(**SMALL, lam=1.0), seed=1)
    assert "guidance_image" in full.intermediates and full.intermediates["guidance_image"].dtype == np.uint8
    assert full.intermediates["guidance_image"].shape == (16, 16, 3)
    assert not any(k.startswith("guidance") for k in simple.intermediates)
    # the guidance image costs a guided decoding (4 steps x 2 branches) and its inversion (4 x 1)
    assert full.unet_evaluations - simple.unet_evaluations == 8 + 4
    assert np.array_equal(full.mask, simple.mask)  # same seed: the same mask
    assert not np.array_equal(full.image, simple.image)


def test_unet_evaluations_counted_by_hand(tiny):
    forwards = []  # (batch size, grad enabled) of every U-Net call
    hook = tiny.unet.register_forward_hook(lambda m, a, o: forwards.append((a[0].shape[0], torch.is_grad_enabled())))
    try:
        res = run_edit("ito", tiny, _text_request(), ITOConfig(**SMALL), seed=0)
        # mask (Eq. 7): a guided 4-step run from x_E per condition for 2 seeds, 2 x 4 x 2 x 2; inversion 4 x 1;
        # guidance image: decoding 4 x 2 (CFG) and its inversion 4 x 1; the edit: decoding 4 x 2
        assert res.unet_evaluations == 32 + 4 + 8 + 4 + 8 == sum(b for b, _ in forwards) == 56
        forwards.clear()
        refined = run_edit("ito", tiny, _text_request(), ITOConfig(**SMALL, refine_guidance=True), seed=0)
        assert refined.unet_evaluations == 56 + 8 + 4 == sum(b for b, _ in forwards)  # A.5: decode G again, invert
        forwards.clear()
        direct = run_edit("ito", tiny, _text_request(), ITOConfig(**SMALL, mask_mode="direct"), seed=0)
        # DiffEdit-style mask: one guided prediction per seed, the null branch shared (3 branches x 2 seeds)
        assert direct.unet_evaluations == 6 + 4 + 8 + 4 + 8 == sum(b for b, _ in forwards)
        assert "guidance_image_unrefined" in refined.intermediates
        forwards.clear()
        given = _text_request()
        given.mask = np.ones((16, 16), np.uint8)
        half = run_edit("ito", tiny, given, ITOConfig(**SMALL, encode_ratio=0.5, lam=1.0), seed=0)
        assert half.unet_evaluations == 2 + 2 * 2 == sum(b for b, _ in forwards)  # no mask estimation
    finally:
        hook.remove()
    # the losses are functions of the latents only: no U-Net call ever records a graph, no backward pass
    assert not any(grad for _, grad in forwards)
    assert res.provenance["unet_backward"] == 0


def test_bad_condition_combinations_are_clear_errors(tiny, layout_bb):
    img = _image()
    with pytest.raises(ValueError, match="nothing to edit"):
        run_edit("ito", tiny, EditRequest(img, "a cartoon man", source_prompt="a cartoon man"), ITOConfig(**SMALL))
    same_pose = EditRequest(img, "a cartoon man", source_prompt="a cartoon man", controls={"pose": _pose(4)},
                            source_controls={"pose": _pose(4)})
    with pytest.raises(ValueError, match="nothing to edit"):
        run_edit("ito", layout_bb, same_pose, ITOConfig(**SMALL))
    no_source = EditRequest(img, "a cartoon man", source_prompt="a cartoon man", controls={"pose": _pose(8)})
    with pytest.raises(ValueError, match=r"without the input's own map \(source_controls\['pose'\]\)"):
        run_edit("ito", layout_bb, no_source, ITOConfig(**SMALL))
    with pytest.raises(ValueError, match="no ControlNets"):  # the plain tiny model has none
        run_edit("ito", tiny, EditRequest(img, "a man", controls={"pose": _pose(8)}, source_controls={"pose": _pose(4)}))
    with pytest.raises(ValueError, match="unknown condition type 'depth'"):
        run_edit("ito", layout_bb, EditRequest(img, "a man", controls={"depth": _pose(8)}, source_controls={"depth": _pose(4)}))
    with pytest.raises(ValueError, match="layout map must be uint8"):
        run_edit("ito", layout_bb, EditRequest(img, "a man", controls={"pose": _pose(8).astype(np.float32)},
                                   source_controls={"pose": _pose(4)}))


def test_masks_from_layout_and_from_text(tiny, layout_bb):
    img = _image(3)
    cfg = ITOConfig(**SMALL)
    s = make_schedule(tiny.scheduler_config, cfg.steps)
    pose_edit = EditRequest(img, "a cartoon man", source_prompt="a cartoon man", controls={"pose": _pose(10)},
                            source_controls={"pose": _pose(2)})
    with torch.no_grad():
        z0 = encode_image(layout_bb, img)
        conds = edit_conditions(layout_bb, pose_edit, cfg.negative_prompt, cfg.controlnet_scale)
        assert torch.equal(conds.source.text, conds.edit.text)  # layout only: the same prompt in both branches
        with count_network_calls(layout_bb) as calls:
            mask, soft = edit_mask(layout_bb, z0, conds, s, cfg, seed=0)
    # 2 runs of 4 steps, 2 seeds, CFG with a null branch of its own for the new pose
    assert mask.shape == soft.shape == (1, 1, 8, 8) and calls.unet_evaluations == 2 * 4 * 2 * 2
    assert calls.controlnet_calls == 4  # one batched ControlNet call a step
    assert set(mask.unique().tolist()) == {0.0, 1.0}  # binary, neither empty nor everything
    assert 0 <= float(soft.min()) and float(soft.max()) == pytest.approx(1.0)
    # with text only, the layout ControlNets are not used and the prompts differ
    with torch.no_grad():
        tconds = edit_conditions(tiny, _text_request(), cfg.negative_prompt, cfg.controlnet_scale)
        assert not tconds.source.controls and not torch.equal(tconds.source.text, tconds.edit.text)
        tmask, tsoft = edit_mask(tiny, encode_image(tiny, _image()), tconds, s, cfg, seed=0)
    assert tmask.shape == (1, 1, 8, 8) and 0 < float(tmask.mean()) <= 1 and float(tsoft.max()) == pytest.approx(1)
    # a full pose edit, text + pose together (supp. A.4.1), runs with every intermediate
    both = EditRequest(img, "a cartoon woman", source_prompt="a cartoon man", controls={"pose": _pose(10)},
                       source_controls={"pose": _pose(2)})
    res = run_edit("ito", layout_bb, both, cfg, seed=0)
    assert res.image.shape == (16, 16, 3) and res.mask.shape == (16, 16)
    assert {"mask_latent", "guidance_image", "inverted_latents", "guidance_inverted_latents", "latents"} <= \
        set(res.intermediates)
    assert res.provenance["method"] == "ito" and res.provenance["config"]["lam"] == 0.6


def test_controlnet_only_is_ito_without_updates_or_mask(layout_bb):
    """The ControlNet-only baseline: inversion under C_0, decoding under C_EDIT, nothing preserved -
    exactly ITO with t_u = 0 and a mask covering everything."""
    img = _image(3)
    req = EditRequest(img, "a cartoon woman", source_prompt="a cartoon man", controls={"pose": _pose(10)},
                      source_controls={"pose": _pose(2)})
    base = run_edit("controlnet", layout_bb, req, make_config("controlnet", steps=4), seed=0)
    full = EditRequest(img, req.target_prompt, req.source_prompt, mask=np.ones((16, 16), bool),
                       controls=req.controls, source_controls=req.source_controls)
    ref = run_edit("ito", layout_bb, full, ITOConfig(steps=4, update_steps=0), seed=0)
    assert torch.allclose(base.intermediates["latents"], ref.intermediates["latents"], atol=1e-6)
    assert base.unet_evaluations == ref.unet_evaluations == 4 + 2 * 4  # inversion, guided decoding
    with pytest.raises(ValueError, match="text only"):
        run_edit("sdedit", layout_bb, req)

"""The MCDM (§3.3) and its mask-guided editing (§3.4): the widened U-Net starts as the base model, the adapter as
the CLIP tokens; training runs, resumes and saves the diffusers layout (with the paper's ablations); an edit is
deterministic, makes the U-Net calls the paper's recipe implies, and refuses what it cannot do before it runs."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semedit.methods import EditRequest, make_config, run_edit
from semedit.methods.mcdm import MCDMConfig
from semedit.methods.mcdm.model import ImageEmbeddingAdapter, load_mcdm, widen_conv_in
from semedit.methods.mcdm.train import MCDM_TRAIN, new_mcdm, train_mcdm
from semedit.world import describe, render, sample_record

TINY = MCDM_TRAIN.with_changes(2, 2)
FAST = dict(steps=4, mask_samples=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mcdm")
    report = train_mcdm("toon-64", folder / "run", folder / "model", world_pairs=4, cfg=TINY)
    return folder, report


def trained_request(folder, **changes):
    """An edit along the first direction the model in `folder` was trained on (or `changes`)."""
    directions = json.loads((folder / "directions.json").read_text())
    attribute, entry = next(iter(directions.items()))
    changes = changes or {attribute: next(iter(entry["targets"]))}
    rec = sample_record(5).replace(costume="normal", expression="neutral")
    return EditRequest(image=render(rec).image, source_prompt=describe(rec),
                       target_prompt=describe(rec.replace(**changes)))


def test_widened_unet_starts_as_the_base_model(toon64):
    unet = toon64.unet
    wide = widen_conv_in(unet, 4)
    assert wide.config.in_channels == 8
    x, text = torch.randn(2, 4, 16, 16), torch.randn(2, 8, unet.config.cross_attention_dim)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=text).sample
        same = wide(torch.cat([x, torch.randn_like(x)], 1), t, encoder_hidden_states=text).sample  # c_s has no weight
        scratch = widen_conv_in(unet, 4, pretrained=False)(torch.cat([x, x], 1), t, encoder_hidden_states=text).sample
    assert torch.allclose(base, same, atol=1e-5)
    assert not torch.allclose(base, scratch, atol=1e-2)


def test_adapter_starts_as_the_clip_tokens():
    adapter = ImageEmbeddingAdapter(clip_tokens=5, clip_dim=8, latent_channels=4, latent_size=4, cross_attention_dim=8)
    tokens = torch.randn(2, 5, 8)
    out = adapter(tokens, torch.randn(2, 4, 4, 4))
    assert out.shape == (2, 5, 8) and torch.allclose(out, tokens, atol=1e-6)


def test_training_runs_resumes_and_saves_the_diffusers_layout(trained):
    folder, report = trained
    assert report["steps"] == 2 and report["pairs"] == 4
    assert json.loads((folder / "model" / "unet" / "config.json").read_text())["in_channels"] == 8
    assert (folder / "model" / "adapter" / "diffusion_pytorch_model.safetensors").exists()
    model = load_mcdm(folder / "model")
    assert model.spatial and model.adapter is not None and model.unet.dtype == torch.float32
    again = train_mcdm("toon-64", folder / "run", None, world_pairs=4, cfg=MCDM_TRAIN.with_changes(3, 2))
    log = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    assert again["steps"] == 3 and [r["step"] for r in log] == [2, 3]  # resumed at step 2


def test_ablations_drop_their_condition(toon64):
    no_spatial = new_mcdm(toon64, spatial=False)
    no_image = new_mcdm(toon64, image_embeddings=False)
    assert no_spatial.unet.config.in_channels == 4 and not no_spatial.spatial and no_spatial.adapter is not None
    assert no_image.adapter is None and no_image.spatial


def test_edit_is_deterministic_and_makes_the_recipes_calls(trained, toon64):
    folder, _ = trained
    request = trained_request(folder / "model")
    config = make_config("mcdm", trained_model=str(folder / "model"), **FAST)
    a = run_edit("mcdm", toon64, request, config, seed=3)
    b = run_edit("mcdm", toon64, request, config, seed=3)
    assert np.array_equal(a.image, b.image) and a.mask.shape == (64, 64)
    # mask: 2 noise draws x 5 branches; sampling: 4 steps x (3 nested branches + p_a + p_b)
    assert a.unet_evaluations == 2 * 5 + 4 * 5
    plain = run_edit("mcdm", toon64, request, make_config("mcdm", trained_model=str(folder / "model"),
                                                          mask_guided=False, **FAST), seed=3)
    assert plain.mask is None and plain.unet_evaluations == 4 * 4
    assert a.provenance["mask_threshold"] == {"costume": 0.2, "expression": 0.35}[a.provenance["direction"]]


def test_mask_guided_noise_is_the_source_branch_outside_the_mask(trained, toon64):
    from semedit.methods.mcdm import Branch, guided_noise, image_conditions, mask_guided_noise

    model = load_mcdm(trained[0] / "model")
    c_s, (c_im, null_im) = image_conditions(toon64, model, render(sample_record(1)).image)
    text = [torch.randn(1, 8, 128) for _ in range(3)]
    nested = [Branch(text[0], torch.zeros_like(c_s), null_im), Branch(text[0], torch.zeros_like(c_s), c_im),
              Branch(text[0], c_s, c_im)]
    source, target = Branch(text[1], c_s, c_im), Branch(text[2], c_s, c_im)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:9, 2:12] = 1
    x, scales = torch.randn(1, 4, 16, 16), (3.0, 3.0, 5.0)
    with torch.no_grad():
        eps = mask_guided_noise(model, nested, source, target, scales, mask)(x, 500)
        e_a, e_b = guided_noise(model, x, 500, nested, [source, target], scales)
    inside = mask.bool().expand_as(eps)
    assert torch.equal(eps[~inside], e_a[~inside]) and torch.equal(eps[inside], e_b[inside])
    assert not torch.allclose(e_a, e_b)


def test_an_untrained_direction_is_refused_before_it_runs(trained, toon64):
    folder = trained[0] / "model"
    with pytest.raises(ValueError, match="trained on"):
        run_edit("mcdm", toon64, trained_request(folder, hair_colour="red"),
                 make_config("mcdm", trained_model=str(folder), **FAST))


def test_edit_without_an_ablated_condition_runs(toon64, tmp_path):
    new_mcdm(toon64, spatial=False, image_embeddings=False).save_pretrained(tmp_path)
    rec = sample_record(5).replace(costume="normal")
    request = EditRequest(image=render(rec).image, source_prompt=describe(rec),
                          target_prompt=describe(rec.replace(costume="santa")))
    result = run_edit("mcdm", toon64, request, make_config("mcdm", trained_model=str(tmp_path), **FAST))
    assert result.image.shape == (64, 64, 3)


def test_bad_settings_and_a_missing_model_are_clear_errors(toon64, tmp_path):
    with pytest.raises(ValueError, match="odd"):
        MCDMConfig(mask_blur=4)
    with pytest.raises(ValueError, match="semedit train mcdm"):
        run_edit("mcdm", toon64, EditRequest(render(sample_record(1)).image, "a man, angry", "a man"),
                 make_config("mcdm", trained_model=str(tmp_path)))


def test_train_command_needs_pairs():
    from semedit.cli import main

    result = CliRunner().invoke(main, ["train", "mcdm"])
    assert result.exit_code != 0 and "--pairs" in result.output

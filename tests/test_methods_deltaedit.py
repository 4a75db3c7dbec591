"""DeltaEdit: its generator's style space, the training commands (two steps, resumed), R_s, inference and its
errors, on tiny parts trained here (the committed parts are measured by benchmarks/deltaedit_study.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from semedit.methods import EditRequest, make_config, run_edit
from semedit.methods.deltaedit.generator import StyleConv, StyleGenerator, load_style_generator
from semedit.methods.deltaedit.mapper import RELEVANCE_FILE, load_delta_mapper, relevant_channels, text_direction
from semedit.training.loop import TrainConfig
from semedit.world import record_seed, render, sample_record

TINY_G = dict(channels=(16, 16, 8, 8, 4), z_dim=8, w_dim=8, mapping_layers=2)
TINY_E = dict(channels=(4, 8, 8, 8))


def tiny_cfg(steps, batch=4, **kw):
    return TrainConfig(**{"steps": steps, "batch_size": batch, "lr": 1e-3, "warmup": 0, "checkpoint_every": 1,
                          "log_every": 1, **kw})


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny style generator, encoder, R_s and Delta Mapper, each trained two steps (then resumed to three)."""
    from semedit.methods.deltaedit.relevance import relevance_matrix, save_relevance
    from semedit.methods.deltaedit.train import train_delta_mapper, train_style_diffusion, train_style_generator

    root = tmp_path_factory.mktemp("deltaedit")
    mapping = tiny_cfg(2, 8, min_lr_ratio=1.0, grad_clip=0.0)
    reports = []
    for steps in (2, 3):
        reports.append(train_style_generator(root / "run", root / "style", tiny_cfg(steps), mapping, renders=16,
                                             heldout=100, generator_config=TINY_G, encoder_config=TINY_E))
    generator, encoder = load_style_generator(root / "style")
    from semedit.models.backbone import load_backbone

    clip = load_backbone("toon-64").clip
    images = np.stack([render(sample_record(record_seed(5, i))).image for i in range(2)])
    save_relevance(relevance_matrix(generator, encoder, clip, images), root / "style", {"images": 2})
    mapper_reports = [train_delta_mapper(root / "mapper_run", root / "mapper", root / "style",
                                         tiny_cfg(steps, 8, lr=0.5, min_lr_ratio=1.0, grad_clip=0.0), renders=20,
                                         samples=10, heldout=20) for steps in (2, 3)]
    train_delta_mapper(root / "wplus_run", root / "wplus", root / "style", tiny_cfg(2, 8, lr=0.5), renders=20,
                       samples=0, heldout=20, space="w+")
    diffusion_reports = [train_style_diffusion(root / "diffusion_run", root / "diffusion", root / "style",
                                               tiny_cfg(steps), renders=16, heldout=2, inversion_steps=4)
                         for steps in (2, 3)]
    return {"root": root, "reports": reports, "mapper_reports": mapper_reports,
            "diffusion_reports": diffusion_reports}


def config(parts, **kw):
    return make_config("deltaedit", style_generator=str(parts["root"] / "style"),
                       trained_model=str(parts["root"] / "mapper"), diffusion_model=str(parts["root"] / "diffusion"),
                       **kw)


@pytest.fixture(scope="module")
def request_():
    return EditRequest(image=render(sample_record(record_seed(3, 0))).image, target_prompt="crying", source_prompt="")


def test_the_modulated_convolution_equals_the_grouped_form_of_stylegan2():
    torch.manual_seed(0)
    conv = StyleConv(6, 5, w_dim=4)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 6)
    w = conv.weight[None] * conv.scale * style[:, None, :, None, None]  # (B, out, in, k, k)
    w = w * torch.rsqrt(w.square().sum((2, 3, 4), keepdim=True) + 1e-8)
    grouped = F.conv2d(x.reshape(1, -1, 8, 8), w.reshape(-1, 6, 3, 3), padding=1, groups=3).reshape(3, 5, 8, 8)
    expected = F.leaky_relu(grouped + conv.bias[None, :, None, None], 0.2) * math.sqrt(2)
    torch.testing.assert_close(conv(x, style), expected, rtol=1e-4, atol=1e-5)


def test_the_style_space_splits_into_coarse_medium_and_fine_and_decodes_as_w_plus():
    g = StyleGenerator(**TINY_G).eval()
    levels = g.level_slices()
    assert list(levels) == ["coarse", "medium", "fine"]
    # coarse: 4 px and both 8 px convolutions; medium: 16 and 32 px; fine: 64 px (the Delta Mapper's split)
    assert levels["coarse"] == slice(0, 16 * 3) and levels["fine"].stop == g.style_dim == sum(g.style_dims)
    w_plus = g.w_plus(g.map(torch.randn(2, 8)))
    with torch.no_grad():
        torch.testing.assert_close(g.synthesis(g.styles(w_plus), w_plus), g(w_plus))


def test_each_training_command_runs_two_steps_and_resumes(parts):
    first, resumed = parts["reports"]
    assert (first["autoencoder_steps"], resumed["autoencoder_steps"]) == (2, 3)
    log = [json.loads(line) for line in (parts["root"] / "run" / "autoencoder" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]  # step 3 continued from the checkpoint at 2
    assert [r["steps"] for r in parts["mapper_reports"]] == [2, 3]
    assert [r["steps"] for r in parts["diffusion_reports"]] == [2, 3]
    assert first["style_dim"] == StyleGenerator(**TINY_G).style_dim and 0 < first["heldout_psnr"][0] < 60


def test_every_trained_part_is_fp16_safetensors_in_a_diffusers_folder(parts):
    root = parts["root"]
    for folder in (root / "style" / "generator", root / "style" / "encoder", root / "mapper",
                   root / "diffusion" / "unet", root / "diffusion" / "style-tokens"):
        assert json.loads((folder / "config.json").read_text())["_class_name"]
        with safe_open(folder / "diffusion_pytorch_model.safetensors", "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    with safe_open(root / "style" / RELEVANCE_FILE, "pt") as f:
        rs = f.get_tensor("relevance").float()
    assert rs.shape == (StyleGenerator(**TINY_G).style_dim, 128)
    norms = rs.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones(1), atol=1e-2)  # unit rows (fp16)
    assert load_delta_mapper(root / "mapper").config.space == "s"


def test_threshold_zero_moves_every_channel_and_a_high_one_none(parts, request_, toon64):
    everything = run_edit("deltaedit", toon64, request_, config(parts, threshold=0.0))
    assert everything.provenance["channels_moved"] == everything.provenance["channels"]
    nothing = run_edit("deltaedit", toon64, request_, config(parts, threshold=1.0))
    assert nothing.provenance["channels_moved"] == 0
    reconstruction = run_edit("deltaedit", toon64, request_, config(parts, strength=0.0)).image
    np.testing.assert_array_equal(nothing.image, reconstruction)
    assert not np.array_equal(everything.image, reconstruction)


def test_the_relevance_mask_follows_r_s_times_delta_t():
    relevance = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    keep = relevant_channels(relevance, torch.tensor([0.1, 0.01]), threshold=0.03)
    assert keep.tolist() == [True, False, True]


def test_strength_zero_gives_the_reconstruction(parts, request_, toon64):
    from semedit.models.images import to_tensor, to_uint8

    r = run_edit("deltaedit", toon64, request_, config(parts, strength=0.0))
    generator, encoder = load_style_generator(parts["root"] / "style")
    with torch.no_grad():
        np.testing.assert_array_equal(r.image, to_uint8(generator(encoder(to_tensor(request_.image[None]))))[0])


def test_the_w_plus_ablation_edits_in_w_plus(parts, request_, toon64):
    r = run_edit("deltaedit", toon64, request_, make_config(
        "deltaedit", style_generator=str(parts["root"] / "style"), trained_model=str(parts["root"] / "wplus")))
    assert r.provenance["space"] == "w+" and r.image.shape == (64, 64, 3)


def test_the_text_direction_is_the_difference_of_template_means(toon64):
    from semedit.methods.deltaedit import clip_text

    embed = clip_text(toon64)
    dt = text_direction(embed, "", "crying")
    assert dt.shape == (128,) and dt.norm() > 0
    torch.testing.assert_close(text_direction(embed, "crying", ""), -dt)
    caption = "a cartoon woman, crying"
    torch.testing.assert_close(text_direction(embed, "a cartoon woman", caption),
                               F.normalize(embed([caption])[0], dim=-1) - F.normalize(embed(["a cartoon woman"])[0],
                                                                                      dim=-1))
    # Each list of prompts goes through the text tower once per CLIP model.
    assert clip_text(toon64)([caption]) is embed([caption])


@pytest.mark.parametrize("source,target,message", [("", "  ", "target prompt is empty"),
                                                    ("crying", "Crying ", "are the same")])
def test_bad_prompts_fail_clearly(parts, toon64, source, target, message):
    req = EditRequest(image=render(sample_record(1)).image, target_prompt=target, source_prompt=source)
    with pytest.raises(ValueError, match=message):
        run_edit("deltaedit", toon64, req, config(parts))


def test_missing_parts_name_the_command_that_trains_them(toon64, tmp_path, request_):
    with pytest.raises(ValueError, match="semedit train style-generator"):
        run_edit("deltaedit", toon64, request_, make_config("deltaedit", style_generator=str(tmp_path)))


def test_deltaedit_d_inverts_under_s_and_decodes_under_the_edited_s(parts, request_, toon64):
    from semedit.methods.deltaedit.diffusion import block_levels, load_style_diffusion

    r = run_edit("deltaedit", toon64, request_, config(parts, variant="d", steps=3))
    assert r.image.shape == (64, 64, 3) and r.unet_evaluations == 6  # 3 inversion + 3 decoding steps
    assert r.intermediates["x_T"].shape == (1, 4, 16, 16)
    model = load_style_diffusion(parts["root"] / "diffusion")
    levels = block_levels(model.unet)
    assert (levels["mid_block"], levels["down_blocks.0"], levels["up_blocks.1"]) == ("coarse", "fine", "medium")
    # each cross-attention layer reads only the 4 tokens of its level (coarse first), self-attention is untouched
    routed = {name: p.tokens for name, p in model.unet.attn_processors.items() if ".attn2." in name}
    assert routed and all(sl.stop - sl.start == 4 for sl in routed.values())
    assert {sl.start for name, sl in routed.items() if name.startswith("mid_block.")} == {0}
    assert {sl.start for name, sl in routed.items() if name.startswith("down_blocks.0.")} == {8}
    assert not any(hasattr(p, "tokens") for n, p in model.unet.attn_processors.items() if ".attn1." in n)


def test_interpolation_ends_at_the_two_edits(parts, request_, toon64):
    from semedit.methods.deltaedit import interpolate

    cfg = config(parts)
    strip = interpolate(toon64, request_.image, ("", "crying"), ("", "red hair"), [1.0, 0.5, 0.0], cfg)
    assert strip.shape == (3, 64, 64, 3)
    for omega_image, target in ((strip[0], "crying"), (strip[2], "red hair")):
        edit = run_edit("deltaedit", toon64, EditRequest(request_.image, target, ""), cfg)
        # equal up to 8-bit rounding of float sums that differ with the batch size (3 here, 1 there)
        assert np.abs(omega_image.astype(int) - edit.image).max() <= 1


def test_style_mixing_takes_the_given_levels_from_the_style_image(parts, toon64):
    from semedit.methods.deltaedit import style_mix

    content, style = (render(sample_record(record_seed(4, i))).image for i in range(2))
    cfg = config(parts)
    everything = style_mix(toon64, content, style, ("coarse", "medium", "fine"), cfg)
    own = run_edit("deltaedit", toon64, EditRequest(style, "crying", ""), config(parts, strength=0.0))
    np.testing.assert_array_equal(everything, own.image)
    assert style_mix(toon64, content, style, ("coarse",), cfg).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="levels must be some of"):
        style_mix(toon64, content, style, ("hair",), cfg)


def test_the_interpolation_and_mixing_commands_write_pictures_and_keep_existing_ones(parts, tmp_path, request_):
    from click.testing import CliRunner
    from PIL import Image

    from semedit.cli import main

    root = parts["root"]
    image = tmp_path / "toon.png"
    Image.fromarray(request_.image).save(image)
    common = ["--style-generator", root / "style", "--mapper", root / "mapper"]
    def run(cli, args):
        return CliRunner().invoke(cli, [str(a) for a in args])
    r = run(main, ["deltaedit", "interpolate", image, "-a", "crying", "-b", "red hair", "--frames", "3",
                   "-o", tmp_path / "strip.png", *common])
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "strip.png")).shape == (64, 192, 3)
    r = run(main, ["deltaedit", "mix", image, image, "--level", "fine", "-o", tmp_path / "mix.png", *common])
    assert r.exit_code == 0 and np.asarray(Image.open(tmp_path / "mix.png")).shape == (64, 64, 3)
    before = (tmp_path / "mix.png").read_bytes()
    r = run(main, ["deltaedit", "mix", image, image, "-o", tmp_path / "mix.png", *common])
    assert r.exit_code != 0 and "exists" in r.output and (tmp_path / "mix.png").read_bytes() == before

"""The pixelguide method: pixel classifiers (training, resuming), the guided DDPM sampler, Algorithm 1's
background, the edit on toon-64, bad maps, the command line."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from semedit.engine.ddim import ddim_invert, ddpm_sample, make_schedule, q_sample
from semedit.engine.features import features_at, pixel_features
from semedit.methods import EditRequest, make_config, run_edit
from semedit.methods.pixelguide.train import PIXEL_TRAIN, PixelSetup, train_pixel_classifiers
from semedit.models.toon64 import TOON64_DIR
from semedit.world import render, sample_record

TINY_SETUP = PixelSetup(grid_steps=10, max_timestep=800, pixels_per_image=64, multi_timesteps=(50, 150))
TINY_TRAIN = dataclasses.replace(PIXEL_TRAIN, steps=2, checkpoint_every=1, log_every=1)


@pytest.fixture(scope="module")
def backbone():
    from semedit.service import get_backbone

    return get_backbone("toon-64")


@pytest.fixture(scope="module")
def tiny_classifiers(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixel")
    report = train_pixel_classifiers(TOON64_DIR, root / "run", root / "out", labelled=2, heldout=2, cfg=TINY_TRAIN,
                                     setup=TINY_SETUP, resume=False)
    return root / "out", report


def toon(seed=3, **changes):
    rec = sample_record(seed)
    return rec, rec.replace(**changes) if changes else rec


def test_features_at_reads_the_upsampled_maps_at_the_pixels():
    g = torch.Generator().manual_seed(0)
    store = {0: torch.randn(2, 5, 8, 8, generator=g), 2: torch.randn(2, 3, 16, 16, generator=g)}
    rows, cols = torch.randint(64, (2, 50), generator=g), torch.randint(64, (2, 50), generator=g)
    full = pixel_features(store, (64, 64))
    want = torch.stack([full[b, :, rows[b], cols[b]].T for b in range(2)])
    assert torch.allclose(features_at(store, (64, 64), rows, cols), want, atol=1e-5)


def test_ddpm_sample_without_gradient_is_plain_ancestral_sampling():
    sched = make_schedule(dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                               beta_schedule="scaled_linear", steps_offset=1), 10)
    eps_fn = lambda x, t: 0.1 * x + t / 1000  # noqa: E731
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = ddpm_sample(eps_fn, x, sched, 3, seed=5)
    zero = ddpm_sample(eps_fn, x, sched, 3, seed=5, guidance=lambda x, t: (eps_fn(x, t), torch.zeros_like(x)))
    shifted = ddpm_sample(eps_fn, x, sched, 3, seed=5, guidance=lambda x, t: (eps_fn(x, t), torch.ones_like(x)))
    assert torch.equal(plain, zero)
    assert not torch.allclose(plain, shifted)
    assert not torch.allclose(plain, ddpm_sample(eps_fn, x, sched, 3, seed=6))  # the seed draws the noise


def test_classifier_training_runs_resumes_and_reports(tiny_classifiers, tmp_path):
    out, report = tiny_classifiers
    assert (out / "config.json").exists() and (out / "diffusion_pytorch_model.safetensors").exists()
    assert report["steps"] == 2 and 0 <= report["g_multi"]["miou"] <= 1
    assert set(report["g_t"]) == {1, 101, 201, 301, 401, 501, 601, 701}  # the 10-step grid up to 800
    run = tmp_path / "run"
    train_pixel_classifiers(TOON64_DIR, run, None, labelled=2, heldout=2, cfg=TINY_TRAIN, setup=TINY_SETUP)
    longer = dataclasses.replace(TINY_TRAIN, steps=3)
    resumed = train_pixel_classifiers(TOON64_DIR, run, None, labelled=2, heldout=2, cfg=longer, setup=TINY_SETUP)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert resumed["steps"] == 3 and steps == [1, 2, 3]  # one more step, not three


def test_scale_zero_is_ddpm_from_the_inverted_latent_with_the_noised_input_outside(backbone, tiny_classifiers):
    from semedit.engine.conditioning import encode_image, encode_text
    from semedit.engine.masks import blend, resize

    rec, edited = toon(3, mouth="open" if sample_record(3).mouth == "closed" else "closed")
    image = render(rec).image
    request = EditRequest(image=image, target_prompt="", edited_seg=render(edited).seg.astype(np.int64),
                          source_seg=render(rec).seg.astype(np.int64))
    config = make_config("pixelguide", scale=0.0, t0=300, classifiers=str(tiny_classifiers[0]))
    result = run_edit("pixelguide", backbone, request, config, seed=4)
    roi = result.mask > 0
    z0 = encode_image(backbone, image)
    text = encode_text(backbone, [""])
    eps_fn = lambda x, t: backbone.unet(x, t, encoder_hidden_states=text).sample  # noqa: E731
    sched = make_schedule(backbone.scheduler_config, 50)
    start = sched.start_index(0.3)
    m = resize(torch.from_numpy(roi.astype(np.float32))[None, None], (16, 16))
    gen = torch.Generator().manual_seed(5)

    def keep(level, x):
        return blend(x, q_sample(z0, torch.randn(tuple(x.shape), generator=gen), sched.alphas[level]), m)

    with torch.no_grad():
        want = ddpm_sample(eps_fn, ddim_invert(eps_fn, z0, sched, start)[start], sched, start, after_step=keep, seed=4)
    assert torch.allclose(result.intermediates["latents"], want, atol=1e-5)
    assert result.provenance["t0"] == 300 and result.provenance["guided_steps"] == 15


def test_pixels_outside_the_roi_are_the_inputs(backbone, tiny_classifiers):
    rec, edited = toon(5, glasses="round" if sample_record(5).glasses == "none" else "none")
    image = render(rec).image
    request = EditRequest(image=image, target_prompt="", edited_seg=render(edited).seg.astype(np.int64),
                          source_seg=render(rec).seg.astype(np.int64))
    result = run_edit("pixelguide", backbone, request, make_config("pixelguide", classifiers=str(tiny_classifiers[0])))
    roi = result.mask > 0
    changed = render(rec).seg != render(edited).seg
    assert roi[changed].all() and not roi.all()
    assert np.array_equal(result.image[~roi], image[~roi])
    assert not np.array_equal(result.image[roi], image[roi])
    loose = run_edit("pixelguide", backbone, request, make_config("pixelguide", keep_outside=False,
                                                                  classifiers=str(tiny_classifiers[0])))
    assert not np.array_equal(loose.image[~roi], image[~roi])  # the decoder alone does not keep them


def test_bad_maps_fail_before_any_unet_call(backbone, tiny_classifiers):
    rec = sample_record(3)
    image, seg = render(rec).image, render(rec).seg.astype(np.int64)
    config = make_config("pixelguide", classifiers=str(tiny_classifiers[0]))

    def no_unet(calls):
        raise AssertionError("the U-Net ran")

    cases = {
        "must be 64x64": EditRequest(image=image, target_prompt="", edited_seg=seg[:32, :32]),
        "unknown class id": EditRequest(image=image, target_prompt="", edited_seg=np.where(seg == 0, 99, seg),
                                        source_seg=seg),
        "changes no pixel": EditRequest(image=image, target_prompt="", edited_seg=seg, source_seg=seg),
        "covers the whole image": EditRequest(image=image, target_prompt="", source_seg=seg,
                                              edited_seg=np.where(seg == 1, 2, 1)),
        "edits by segmentation map": EditRequest(image=image, target_prompt="a toon"),
    }
    for message, request in cases.items():
        with pytest.raises(ValueError, match=message):
            run_edit("pixelguide", backbone, request, config, before_unet=no_unet)
    with pytest.raises(ValueError, match="takes no segmentation map"):
        run_edit("sdedit", backbone, EditRequest(image=image, target_prompt="a toon", edited_seg=seg))


def test_mouth_open_edit_changes_the_evaluators_reading(backbone):
    """With the committed classifiers: a closed mouth opened by map changes what the judge reads there."""
    from semedit.models.backbone import load_evaluator

    judge = load_evaluator()
    opened = 0
    for seed in (21, 22, 23):
        rec = sample_record(seed).replace(mouth="closed", expression="neutral")
        edited = rec.replace(mouth="open")
        request = EditRequest(image=render(rec).image, target_prompt="", edited_seg=render(edited).seg.astype(np.int64),
                              source_seg=render(rec).seg.astype(np.int64))
        result = run_edit("pixelguide", backbone, request, seed=0)
        assert judge.predict(render(rec).image[None])[0]["mouth"] == "closed"
        opened += judge.predict(result.image[None])[0]["mouth"] == "open"
    assert opened >= 2


def _cli(*args):
    from click.testing import CliRunner

    from semedit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_segment_writes_a_palette_map_that_the_edit_reads_back(tmp_path):
    from PIL import Image

    from semedit.world import SEG_PALETTE, save_toon_png

    rec = sample_record(8)
    toon_png = tmp_path / "toon.png"
    save_toon_png(toon_png, rec)
    r = _cli("segment", toon_png, "-o", tmp_path / "seg.png")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "seg.png") as img:
        assert img.mode == "P"
        seg = np.asarray(img)
    assert (tmp_path / "seg.overlay.png").exists()
    assert (seg == render(rec).seg).mean() > 0.6  # the classifiers' estimate, not noise
    assert _cli("segment", toon_png, "-o", tmp_path / "seg.png").exit_code == 1  # no overwrite unless asked
    # an RGB map in the class colours is read as the same ids; a stray colour is refused
    edited = seg.copy()
    edited[40:44, 28:36] = 5  # paint a mouth
    Image.fromarray(SEG_PALETTE[edited]).save(tmp_path / "edited_rgb.png")
    r = _cli("edit", "pixelguide", toon_png, "--seg", tmp_path / "edited_rgb.png", "--source-seg", tmp_path / "seg.png",
             "-o", tmp_path / "out.png", "--save-intermediates")
    assert r.exit_code == 0, r.output
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["source_map"] == "given" and sidecar["changed_pixels"] == int((edited != seg).sum())
    for name in ("source_map", "edited_map", "mask", "result_map"):
        assert (tmp_path / f"out.{name}.png").exists()
    stray = SEG_PALETTE[edited].copy()
    stray[0, 0] = (1, 2, 3)
    Image.fromarray(stray).save(tmp_path / "stray.png")
    r = _cli("edit", "pixelguide", toon_png, "--seg", tmp_path / "stray.png", "-o", tmp_path / "o2.png")
    assert r.exit_code == 1 and "colours that are no class's" in r.output and not (tmp_path / "o2.png").exists()


def test_toon_pngs_are_edited_by_set_with_their_records_maps(tmp_path):
    from semedit.world import save_toon_png

    rec = sample_record(9).replace(glasses="none")
    save_toon_png(tmp_path / "toon.png", rec)
    r = _cli("edit", "pixelguide", tmp_path / "toon.png", "--set", "glasses=round", "-o", tmp_path / "out.png")
    assert r.exit_code == 0, r.output
    sidecar = json.loads((tmp_path / "out.json").read_text())
    want = int((render(rec).seg != render(rec.replace(glasses="round")).seg).sum())
    assert sidecar["changed_pixels"] == want and sidecar["source_map"] == "given"
    r = _cli("edit", "pixelguide", tmp_path / "toon.png", "--set", "glasses=round", "--seg", tmp_path / "out.png",
             "-o", tmp_path / "o3.png")
    assert r.exit_code == 1 and "either as an edited map" in r.output


def test_the_app_edits_a_toon_by_map(tmp_path):
    """The web app runs pixelguide on a toon with attribute changes and shows its maps."""
    import time

    from fastapi.testclient import TestClient

    from semedit.app.server import create_app

    client = TestClient(create_app("toon-64", tmp_path / "data"))
    toon = client.post("/api/toon", json={"seed": 4, "changes": {"mouth": "closed"}}).json()
    started = client.post("/api/edit", json={"method": "pixelguide", "image": toon["image"],
                                             "changes": {"mouth": "open"}})
    assert started.status_code == 200, started.text
    for _ in range(600):
        state = client.get(f"/api/jobs/{started.json()['job']}").json()
        if state["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert state["state"] == "done", state
    assert {"source_map", "edited_map", "mask", "result_map"} <= set(state["result"]["pictures"])
    assert state["result"]["provenance"]["source_map"] == "given"


def test_classifiers_train_and_guide_on_a_stable_diffusion_folder(tiny_folder, tmp_path):
    """The path for real weights: classifiers trained on another diffusers SD folder (renders resized to its
    16x16 images) and pixelguide run on it, with them given by folder."""
    from semedit.models.backbone import load_backbone

    setup = dataclasses.replace(TINY_SETUP, blocks=(0, 1))
    train_pixel_classifiers(tiny_folder, tmp_path / "run", tmp_path / "out", labelled=2, heldout=2, cfg=TINY_TRAIN,
                            setup=setup, resume=False)
    backbone = load_backbone(str(tiny_folder))
    seg = np.zeros((16, 16), np.int64)
    edited = seg.copy()
    edited[6:10, 6:10] = 5
    image = np.full((16, 16, 3), 128, np.uint8)
    request = EditRequest(image=image, target_prompt="", edited_seg=edited, source_seg=seg)
    result = run_edit("pixelguide", backbone, request, make_config("pixelguide", classifiers=str(tmp_path / "out")))
    roi = result.mask > 0
    assert result.image.shape == (16, 16, 3) and np.array_equal(result.image[~roi], image[~roi])
    with pytest.raises(ValueError, match="no pixel classifiers"):
        run_edit("pixelguide", backbone, request)  # the folder has none of its own

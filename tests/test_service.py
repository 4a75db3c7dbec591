"""The service layer: requests from what a user gives, progress and cancellation, whole saves, cached
backbones, and method configs that refuse values outside their declared ranges."""

import json
import threading

import numpy as np
import pytest

from semedit.methods import make_config
from semedit.service import (EditCancelled, EditInputs, InputError, get_backbone, parse_changes, prepare_edit,
                             run_with_progress, save_result)
from semedit.world import describe, sample_record

SIZE = 16


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def test_a_toon_record_gives_the_prompts_and_the_layout_maps(tiny):
    rec = sample_record(5)
    prepared = prepare_edit(EditInputs(_image(), record=rec, changes=parse_changes(["hair_colour=blue"])))
    assert prepared.source == describe(rec) and prepared.target == describe(rec.replace(hair_colour="blue"))
    assert prepared.provenance()["changes"] == ["hair_colour=blue"]
    request = prepared.request(tiny)
    assert request.image.shape == (SIZE, SIZE, 3) and not request.controls
    # a layout edit asks for a ControlNet the tiny model does not have: refused before any model runs
    moved = prepare_edit(EditInputs(_image(), record=rec, changes={"head_x": 3.0}, layout_from_changes="pose"))
    with pytest.raises(InputError, match="no pose ControlNet"):
        moved.request(tiny)


@pytest.mark.parametrize("inputs, message", [
    (EditInputs(_image(), target="x"), "source prompt"),
    (EditInputs(_image(), source="x"), "what should change"),
    (EditInputs(_image(), source="x", changes={"hair_colour": "blue"}), "toon PNG"),
    (EditInputs(_image(), record=sample_record(5), changes={"hair_colour": "blue"}, target="y"), "either"),
    (EditInputs(_image(), source="x", target="y", layout_from_changes="pose"), "goes with --set"),
    (EditInputs(_image(), record=sample_record(5), changes={"hair_colour": "nope"}), "hair_colour"),
])
def test_bad_inputs_are_refused_before_any_model_loads(inputs, message):
    with pytest.raises(InputError, match=message):
        prepare_edit(inputs)


def test_pictures_of_the_wrong_size_and_empty_masks_are_refused(tiny, tmp_path):
    big = prepare_edit(EditInputs(np.zeros((SIZE * 2, SIZE * 2, 3), np.uint8), source="x", target="y"))
    with pytest.raises(InputError, match=f"needs {SIZE}x{SIZE}"):
        big.request(tiny)
    empty = prepare_edit(EditInputs(_image(), source="x", target="y", mask=np.zeros((SIZE, SIZE), np.uint8)))
    with pytest.raises(InputError, match="mask is empty"):
        empty.request(tiny)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        prepare_edit(EditInputs(tmp_path / "junk.png", source="x", target="y")).request(tiny)


def test_progress_reports_every_unet_call_and_cancel_stops_the_edit(tiny):
    request = prepare_edit(EditInputs(_image(), source="a cartoon man", target="a cartoon woman")).request(tiny)
    config = make_config("sdedit", steps=8, strength=0.5)
    seen = []
    result = run_with_progress("sdedit", tiny, request, config, progress=lambda c: seen.append(c.unet_evaluations))
    assert seen == [0, 2, 4, 6] and result.unet_evaluations == 8  # 4 steps, 2 guidance branches each
    assert result.provenance["unet_calls"] == 4 and result.provenance["controlnet_calls"] == 0
    cancel = threading.Event()

    def stop_after_two(calls):
        if calls.unet_calls == 2:
            cancel.set()

    with pytest.raises(EditCancelled, match="after 4 U-Net evaluations"):
        run_with_progress("sdedit", tiny, request, config, progress=stop_after_two, cancel=cancel)


def test_save_writes_all_files_or_none_and_never_overwrites(tiny, tmp_path, monkeypatch):
    request = prepare_edit(EditInputs(_image(), source="a cartoon man", target="a cartoon woman",
                                      mask=np.ones((SIZE, SIZE), np.uint8))).request(tiny)
    result = run_with_progress("diffedit", tiny, request, make_config("diffedit", steps=4))
    out = tmp_path / "e.png"
    files = save_result(result, out, save_intermediates=True)  # mask_latent and mask_soft share memory
    assert {f.name for f in files} >= {"e.png", "e.json", "e.mask.png", "e.intermediates.safetensors"}
    assert json.loads(out.with_suffix(".json").read_text())["method"] == "diffedit"
    assert not list(tmp_path.glob(".*partial"))
    before = {f: f.read_bytes() for f in files}
    with pytest.raises(FileExistsError, match="overwrite"):
        save_result(result, out, save_intermediates=True)
    assert {f: f.read_bytes() for f in files} == before
    def disk_full(*args, **kwargs):  # the safetensors file fails after the PNGs are written
        raise OSError("no space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(OSError, match="no space"):
        save_result(result, tmp_path / "f.png", save_intermediates=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)  # nothing of f.png


@pytest.fixture(scope="module")
def pose_net_free_scribble(tiny_folder, tmp_path_factory):
    """The tiny backbone with a (random) scribble ControlNet."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    path = tmp_path_factory.mktemp("cn") / "scribble"
    ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(tiny_folder / "unet"),
                              conditioning_embedding_out_channels=(8, 8)).save_pretrained(path)
    return get_backbone(str(tiny_folder), {"scribble": str(path)})


def test_backbones_are_loaded_once(tiny_folder):
    assert get_backbone(str(tiny_folder)) is get_backbone(str(tiny_folder))
    with pytest.raises(InputError, match="neither a local folder nor a hub id"):
        get_backbone("no such model")


def test_configs_refuse_values_outside_their_ranges():
    for method, field, value in (("sdedit", "strength", 0.0), ("ito", "lam", 1.5), ("ito", "lr", float("inf")),
                                 ("diffedit", "blend_with", "later"), ("ito", "mask_blur_kernel", 4),
                                 ("controlnet", "guidance_scale", float("nan"))):
        with pytest.raises(ValueError, match=field):
            make_config(method, **{field: value})
    assert make_config("ito", mask_encode_ratio=None).mask_encode_ratio is None


def test_the_python_api_edits_in_one_call(tiny_folder, tmp_path):
    from semedit.api import edit

    out = tmp_path / "api.png"
    result = edit(_image(), "sdedit", source="a cartoon man", target="a cartoon woman", model=str(tiny_folder),
                  steps=4, seed=2, output=out)
    assert result.image.shape == (SIZE, SIZE, 3) and result.provenance["target_prompt"] == "a cartoon woman"
    assert json.loads(out.with_suffix(".json").read_text())["config"]["steps"] == 4
    with pytest.raises(ValueError, match="strength"):
        edit(_image(), "sdedit", source="x", target="y", model=str(tiny_folder), strength=2.0)


@pytest.mark.parametrize("method, settings, phases", [
    ("sdedit", {"steps": 8}, ["denoising"]),
    ("diffedit", {"steps": 4, "mask_samples": 2}, ["mask", "inversion", "decoding"]),
    ("ito", {"steps": 4, "mask_samples": 2}, ["mask (Eq. 7)", "inversion (Eq. 2)", "guidance image",
                                              "edit (Eq. 3-6)"]),
])
def test_progress_names_each_phase_and_its_steps(tiny, method, settings, phases):
    request = prepare_edit(EditInputs(_image(), source="a cartoon man", target="a cartoon woman")).request(tiny)
    seen = []
    run_with_progress(method, tiny, request, make_config(method, **settings),
                      progress=lambda c: seen.append((c.phase, c.phase_calls, c.phase_steps)))
    assert list(dict.fromkeys(p for p, _, _ in seen)) == phases  # in order, each once
    for name in phases:  # every call of a phase counted, 0 .. steps - 1, against the steps it announced
        calls = [(k, n) for p, k, n in seen if p == name]
        assert [k for k, _ in calls] == list(range(len(calls))) and {n for _, n in calls} == {len(calls)}


def test_a_scribble_edit_of_any_picture_takes_its_edges_as_the_inputs_own_map(tiny_folder, pose_net_free_scribble):
    bb = pose_net_free_scribble
    image = _image(4)
    target_scribble = np.zeros((SIZE, SIZE, 3), np.uint8)
    target_scribble[4:12, 8] = 255
    prepared = prepare_edit(EditInputs(image, source="a room", controls={"scribble": target_scribble}))
    request = prepared.request(bb, "controlnet")
    from semedit.world import scribble_map

    assert np.array_equal(request.source_controls["scribble"][..., 0], scribble_map(image))
    assert any("edge map" in n for n in prepared.notes)


def test_a_layered_edit_told_in_its_parts_needs_no_target_or_source():
    """Subject and background parts make the target; layered reads no source prompt, so none is asked for."""
    prepared = prepare_edit(EditInputs(_image(), object_prompt="a woman, laughing", background_prompt="on a beach"),
                            method="layered")
    assert prepared.target == "a woman, laughing, on a beach" and prepared.source == ""
    with pytest.raises(InputError, match="source prompt"):
        prepare_edit(EditInputs(_image(), target="x"), method="diffedit")

"""`semedit edit METHOD`: outputs, provenance, no overwriting, derived source prompts, clear errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from semedit.cli import main
from semedit.world import describe, sample_record, save_toon_png

SIZE = 16  # the tiny backbone's image size


@pytest.fixture()
def toon(tmp_path):
    """A toon PNG carrying its record, shrunk to the tiny model's size (metadata kept)."""
    from PIL.PngImagePlugin import PngInfo

    rec = sample_record(5)
    big = tmp_path / "toon64.png"
    save_toon_png(big, rec)
    meta = PngInfo()
    meta.add_text("toon-record", Image.open(big).text["toon-record"])
    path = tmp_path / "toon.png"
    Image.open(big).resize((SIZE, SIZE), Image.BILINEAR).save(path, pnginfo=meta)
    return path, rec


def _edit(*args):
    return CliRunner().invoke(main, ["edit", *map(str, args)], catch_exceptions=False)


def test_edit_writes_image_and_provenance_and_never_overwrites(tiny_folder, toon, tmp_path):
    src, rec = toon
    out = tmp_path / "res" / "out.png"
    r = _edit("sdedit", src, "-t", "a cartoon woman with red hair", "--model", tiny_folder, "--steps", 4,
              "--seed", 3, "-o", out)
    assert r.exit_code == 0, r.output
    img = Image.open(out)
    assert img.size == (SIZE, SIZE)
    prov = json.loads(img.text["semedit"])
    side = json.loads(out.with_suffix(".json").read_text())
    assert prov["method"] == side["method"] == "sdedit" and prov["seed"] == 3 and prov["config"]["steps"] == 4
    assert side["source_prompt"] == describe(rec)  # derived from the toon PNG's record
    assert side["unet_evaluations"] > 0 and side["model"] == str(tiny_folder)
    before = out.read_bytes()
    r = _edit("sdedit", src, "-t", "a cartoon man", "--model", tiny_folder, "--steps", 4, "-o", out)
    assert r.exit_code != 0 and "--overwrite" in r.output
    assert out.read_bytes() == before
    # same seed and settings: the same image; --overwrite replaces
    r = _edit("sdedit", src, "-t", "a cartoon woman with red hair", "--model", tiny_folder, "--steps", 4,
              "--seed", 3, "-o", out, "--overwrite")
    assert r.exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(img))


def test_edit_saves_intermediates(tiny_folder, toon, tmp_path):
    src, _ = toon
    out = tmp_path / "d.png"
    r = _edit("diffedit", src, "-t", "a cartoon woman with red hair", "--model", tiny_folder, "--steps", 4,
              "--mask-samples", 2, "-o", out, "--save-intermediates")
    assert r.exit_code == 0, r.output
    mask = np.asarray(Image.open(tmp_path / "d.mask.png"))
    assert mask.shape == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
    from safetensors.torch import load_file

    t = load_file(tmp_path / "d.intermediates.safetensors")
    assert {"inverted_latents.4", "mask_latent", "latents"} <= set(t)  # inverted latents by level (4 = input)
    assert str(tmp_path / "d.mask.png") in json.loads((tmp_path / "d.json").read_text())["files"]


@pytest.mark.parametrize("args, message", [
    (["-t", "x", "--encode-ratio", "2"], "--encode-ratio"),
    (["-t", "x", "--guidance-scale", "nan"], "guidance_scale must be a finite number"),
    ([], "--target"),
    (["-t", "x", "--pose", "{img}"], "no pose ControlNet"),
    (["-t", "x", "-o", "{tmp}/x.jpg"], "must end in .png"),
])
def test_edit_errors(tiny_folder, toon, tmp_path, args, message):
    src, _ = toon
    args = [a.format(img=src, tmp=tmp_path) for a in args]
    if "-o" not in args:
        args += ["-o", tmp_path / "o.png"]
    r = _edit("diffedit", src, "--model", tiny_folder, *args)
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "o.png").exists()


def test_edit_needs_source_for_plain_images_and_the_right_size(tiny_folder, tmp_path):
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(plain)
    r = _edit("diffedit", plain, "-t", "x", "--model", tiny_folder, "-o", tmp_path / "o.png")
    assert r.exit_code != 0 and "--source" in r.output
    r = _edit("sdedit", plain, "-t", "x", "--model", tiny_folder, "--steps", 2, "-o", tmp_path / "s.png")
    assert r.exit_code == 0, r.output  # SDEdit reads no source prompt
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((SIZE * 2, SIZE * 2, 3), np.uint8)).save(big)
    r = _edit("sdedit", big, "-s", "y", "-t", "x", "--model", tiny_folder, "-o", tmp_path / "o.png")
    assert r.exit_code != 0 and f"needs {SIZE}x{SIZE}" in r.output
    r = CliRunner().invoke(main, ["edit", "nosuchmethod", str(plain)])
    assert r.exit_code != 0 and "nosuchmethod" in r.output


def test_edit_with_attribute_changes_derives_the_target(tiny_folder, toon, tmp_path):
    src, rec = toon
    out = tmp_path / "s.png"
    r = _edit("sdedit", src, "--set", "hair_colour=blue", "--set", "costume=santa", "--model", tiny_folder,
              "--steps", 2, "-o", out)
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["target_prompt"] == describe(rec.replace(hair_colour="blue", costume="santa"))
    assert side["changes"] == ["hair_colour=blue", "costume=santa"]
    for args, message in ((["--set", "nope=1"], "unknown attribute"), (["--set", "hair_colour=x"], "hair_colour"),
                          (["--set", "hair_colour=blue", "-t", "x"], "either with --set"),
                          (["--layout", "pose", "-t", "x"], "--layout goes with --set"),
                          (["--set", "head_x=3", "--layout", "pose"], "no pose ControlNet")):
        r = _edit("sdedit", src, *args, "--model", tiny_folder, "-o", tmp_path / "bad.png")
        assert r.exit_code != 0 and message in r.output, (args, r.output)
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(plain)
    r = _edit("sdedit", plain, "-s", "x", "--set", "hair_colour=blue", "--model", tiny_folder, "-o", tmp_path / "b.png")
    assert r.exit_code != 0 and "toon PNG" in r.output
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "b.png").exists()


def test_edit_with_any_named_controlnet(tiny_folder, tmp_path):
    """A ControlNet of the user's own (e.g. Hough lines, ITO supp. A.4.1) loaded with --model by name,
    its target and source maps given by --control / --source-control."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    net = tmp_path / "cn-lines"
    ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(tiny_folder / "unet"),
                              conditioning_embedding_out_channels=(8, 8)).save_pretrained(net)
    src, lines, src_lines = (tmp_path / f"{n}.png" for n in ("img", "lines", "src_lines"))
    rng = np.random.default_rng(0)
    for p in (src, lines, src_lines):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(p)
    out = tmp_path / "o.png"
    common = ["-s", "a room", "--model", tiny_folder, "--controlnet", f"lines={net}", "--steps", 2]
    r = _edit("controlnet", src, *common, "--control", f"lines={lines}", "--source-control", f"lines={src_lines}",
              "-o", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["method"] == "controlnet"
    for args, message in ((["--control", f"nope={lines}"], "no nope ControlNet"),
                          (["--control", "lines"], "is not NAME=VALUE"),
                          (["--control", f"lines={tmp_path / 'missing.png'}"], "is not a file")):
        r = _edit("controlnet", src, *common, *args, "-o", tmp_path / "bad.png")
        assert r.exit_code != 0 and message in r.output, (args, r.output)
    assert not (tmp_path / "bad.png").exists()


def test_layered_edit_from_the_command_line_with_a_toon_png(toon, tmp_path):
    """`semedit edit layered toon.png --set ... --set background=...` on toon-64: T_a and T_b from the changed
    record, the subject masks by its pixel classifiers, every intermediate written."""
    rec = sample_record(5)
    src = tmp_path / "toon.png"
    save_toon_png(src, rec)
    out = tmp_path / "l.png"
    background = "beach" if rec.background != "beach" else "forest"
    r = _edit("layered", src, "--set", "expression=laughing", "--set", f"background={background}",
              "--embedding-steps", 2, "--finetune-steps", 2, "--steps", 4, "-o", out, "--save-intermediates")
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert "laughing" in side["object_prompt"] and background in side["background_prompt"].replace("night", "")
    from semedit.models.toon64 import TOON64_DIR

    segmenting = len(json.loads((TOON64_DIR / "pixel-classifiers" / "config.json").read_text())["multi_timesteps"])
    # O_t, Eq. 2, Eq. 4-6, Eq. 8, and the pixel classifiers' features of the input and of O_t
    assert side["source_prompt"] == describe(rec)
    assert side["unet_evaluations"] == 2 * 4 + 2 * 2 + 2 * 2 + 2 * 4 + 2 * segmenting
    for name in ("background_image", "subject_input", "subject_background"):
        assert Image.open(tmp_path / f"l.{name}.png").size == (64, 64)
    from safetensors.torch import load_file

    t = load_file(tmp_path / "l.intermediates.safetensors")
    assert t["embedding_losses"].shape == (2, 2) and t["guidance_schedule"].tolist() == [1.0, 0.0, 1.0, 0.0]
    r = _edit("layered", src, "-t", "a cartoon woman laughing", "-o", tmp_path / "x.png")
    assert r.exit_code != 0 and "cannot split" in r.output
    r = _edit("layered", src, "-t", "a cartoon woman, on a beach", "--reference-background", tmp_path / "nope.png",
              "-o", tmp_path / "y.png")
    assert r.exit_code != 0 and "does not exist" in r.output


def test_a_model_family_carries_its_own_method_defaults(tiny_folder, tmp_path):
    """method_defaults.json in a model folder: its values replace the paper's defaults for that model (API, run_edit,
    command line), settings the user gives win over them, the result's provenance names them, bad entries are
    clear errors."""
    import shutil

    from semedit.methods import EditRequest, config_for, run_edit
    from semedit.models.backbone import load_backbone

    folder = tmp_path / "sd"
    shutil.copytree(tiny_folder, folder)
    (folder / "method_defaults.json").write_text(json.dumps({"_about": "a note", "sdedit": {"steps": 4}}))
    bb = load_backbone(str(folder))
    assert config_for("sdedit", bb).steps == 4 and config_for("sdedit", bb, steps=6).steps == 6
    assert config_for("sdedit", bb).strength == 0.5  # not in the file: the paper's
    result = run_edit("sdedit", bb, EditRequest(np.zeros((SIZE, SIZE, 3), np.uint8), "x"))
    assert result.unet_evaluations == 2 * 2 and result.provenance["model_defaults"] == {"steps": 4}
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(plain)
    r = _edit("sdedit", plain, "-t", "x", "--model", folder, "--strength", 1.0, "-o", tmp_path / "a.png")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["config"]["steps"] == 4 and side["config"]["strength"] == 1.0 and side["unet_evaluations"] == 2 * 4
    (folder / "method_defaults.json").write_text(json.dumps({"sdedit": {"nope": 1}}))
    with pytest.raises(ValueError, match="sdedit has no setting.*nope"):
        config_for("sdedit", load_backbone(str(folder)))

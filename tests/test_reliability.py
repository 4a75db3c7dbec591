"""Bad input and faults: each gets a clear error before any work, or a correct result; nothing is
left half-written. The cases and what each gets are listed in docs/reliability.md."""

import dataclasses
import json
import shutil
import struct
import zlib

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from semedit.cli import main
from semedit.methods import REGISTRY, make_config
from semedit.models.backbone import BackboneNotFound, load_backbone
from semedit.service import EditInputs, InputError, prepare_edit, read_picture
from semedit.world import render, sample_record

SIZE = 16


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


# --- pictures ---------------------------------------------------------------------------------------

def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grey = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 257).astype(np.uint16)  # 0 .. 65535 in steps of 257
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    notes = []
    rgb = read_picture(path, SIZE, "the image", notes=notes)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb[..., 0], (grey // 257).astype(np.uint8))
    assert notes == ["the image: 16-bit greyscale scaled to 8 bits"]


def test_transparency_is_composited_on_white_and_said(tmp_path):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 0], rgba[:8, :, 3] = 200, 255  # red top half, transparent bottom half
    notes = []
    rgb = read_picture(_png(tmp_path / "a.png", rgba), SIZE, "the image", notes=notes)
    assert (rgb[:8] == [200, 0, 0]).all() and (rgb[8:] == 255).all() and "transparent" in notes[0]


def test_other_modes_are_converted_and_out_of_range_values_refused(tmp_path):
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (SIZE, SIZE), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    notes = []
    rgb = read_picture(cmyk, SIZE, "the image", notes=notes)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb[..., 0].mean() > 200 > 50 > rgb[..., 1].mean()
    assert notes == ["the image: converted from CMYK to RGB"]
    wide = tmp_path / "i32.tif"
    Image.fromarray(np.full((SIZE, SIZE), 70000, np.int32), mode="I").save(wide)
    with pytest.raises(InputError, match="give an 8- or 16-bit picture"):
        read_picture(wide, SIZE, "the image")


def test_a_picture_of_the_wrong_size_is_refused_from_its_header(tmp_path, monkeypatch):
    big = _png(tmp_path / "big.png", np.zeros((SIZE * 4, SIZE * 4, 3), np.uint8))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a picture it should refuse"))
    with pytest.raises(InputError, match=f"is {SIZE * 4}x{SIZE * 4}; the model needs {SIZE}x{SIZE}"):
        read_picture(big, SIZE, "the image")


def _bomb(path, side=30000):
    """A tiny PNG whose header claims side x side pixels (PIL refuses to open it as a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) +
                     chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused(tmp_path):
    with pytest.raises(InputError, match="too many pixels"):
        read_picture(_bomb(tmp_path / "bomb.png"), SIZE, "the image")


def test_picture_errors_come_before_the_model_loads(tiny_folder, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the pictures were checked")

    monkeypatch.setattr("semedit.service.get_backbone", no_model)
    big = _png(tmp_path / "big.png", np.zeros((SIZE * 2, SIZE * 2, 3), np.uint8))
    r = _cli("edit", "sdedit", big, "-s", "a", "-t", "b", "--model", tiny_folder, "-o", tmp_path / "o.png")
    assert r.exit_code == 1 and f"the model needs {SIZE}x{SIZE}" in r.output
    r = _cli("edit", "ito", _bomb(tmp_path / "bomb.png"), "-s", "a", "-t", "b", "--model", tiny_folder,
             "-o", tmp_path / "o.png")
    assert r.exit_code == 1 and "too many pixels" in r.output and not (tmp_path / "o.png").exists()


# --- outputs ----------------------------------------------------------------------------------------

def test_an_output_that_cannot_be_written_is_refused_before_the_work(tiny_folder, tmp_path):
    image = _png(tmp_path / "i.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    r = _cli("edit", "sdedit", image, "-s", "a", "-t", "b", "--model", tiny_folder, "-o", blocker / "o.png")
    assert r.exit_code == 1 and "not a writable folder" in r.output
    r = _cli("edit", "sdedit", image, "-s", "a", "-t", "b", "--model", tiny_folder, "-o", tmp_path)
    assert r.exit_code != 0 and "is a directory" in r.output


def test_mask_and_intermediates_save_whole_and_rerun_is_refused_cleanly(tiny_folder, tmp_path):
    image = _png(tmp_path / "i.png", np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    mask = _png(tmp_path / "m.png", np.full((SIZE, SIZE), 255, np.uint8))
    args = ["edit", "diffedit", image, "-s", "a cartoon man", "-t", "a cartoon woman", "--mask", mask, "--steps", 4,
            "--model", tiny_folder, "-o", tmp_path / "out" / "e.png", "--save-intermediates"]
    r = _cli(*args)
    assert r.exit_code == 0, r.output
    files = json.loads((tmp_path / "out" / "e.json").read_text())["files"]
    assert len(files) == len(list((tmp_path / "out").iterdir())) - 1  # every file but the sidecar is listed
    r = _cli(*args)
    assert r.exit_code == 1 and "--overwrite" in r.output


# --- methods and settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["sdedit", "controlnet"])
def test_a_mask_is_refused_by_methods_that_take_none(tiny_folder, tmp_path, method):
    image = _png(tmp_path / "i.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    mask = _png(tmp_path / "m.png", np.full((SIZE, SIZE), 255, np.uint8))
    r = _cli("edit", method, image, "-s", "a", "-t", "b", "--mask", mask, "--model", tiny_folder, "-o",
             tmp_path / "o.png")
    assert r.exit_code == 1 and f"{method} takes no mask" in r.output


def test_steps_beyond_the_schedule_are_refused_by_edit_and_generate(tiny_folder, tmp_path):
    image = _png(tmp_path / "i.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    r = _cli("edit", "sdedit", image, "-s", "a", "-t", "b", "--steps", 1000, "--model", tiny_folder, "-o",
             tmp_path / "o.png")
    assert r.exit_code == 1 and "give at most 999" in r.output
    r = _cli("generate", "a cartoon man", "--steps", 1000, "--model", tiny_folder, "-o", tmp_path / "g.png")
    assert r.exit_code == 1 and "give at most 999" in r.output and not (tmp_path / "g.png").exists()


def test_a_long_prompt_is_noted(tiny):
    prepared = prepare_edit(EditInputs(np.zeros((SIZE, SIZE, 3), np.uint8), source="a man",
                                       target="a cartoon woman with red hair " * 20))
    prepared.request(tiny)
    assert any("the model reads only its first 77" in n for n in prepared.notes)
    assert "input_notes" in prepared.provenance()


NUMBERS = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "1e-320", "abc", "",
                                     "2", "0.5", "1000", "99999999999999999999"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str))


def _numeric_fields(method):
    cls = REGISTRY[method].config
    return [f for f in dataclasses.fields(cls) if f.type in ("int", "float", "int | None", "float | None")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(sorted(REGISTRY)), data=st.data(), value=NUMBERS)
def test_every_number_a_user_gives_is_checked(method, data, value, tmp_path):
    """Any value for any numeric setting, on the command line or in the API: a clear error, or a
    config whose every number is finite and within its declared range."""
    from semedit.cli.edit import edit_command

    field = data.draw(st.sampled_from(_numeric_fields(method)))
    image = tmp_path / "i.png"
    if not image.exists():
        _png(image, np.zeros((SIZE, SIZE, 3), np.uint8))
    cmd = edit_command(method, REGISTRY[method])
    flag = "--" + field.name.replace("_", "-")
    try:
        ctx = cmd.make_context(method, [str(image), "-o", str(tmp_path / "o.png"), flag, value])
        settings_given = {k: v for k, v in ctx.params.items() if k in {f.name for f in dataclasses.fields(
            REGISTRY[method].config)}}
        config = make_config(method, **settings_given)
    except click.BadParameter as e:
        assert flag in e.format_message() or field.name in e.format_message() or value in e.format_message()
        return
    except ValueError as e:
        assert str(e), "an error with no message"
        return
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, float):
            assert np.isfinite(v)
        lo, hi, meta = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert lo is None or (v > lo if meta["lo_open"] else v >= lo), (f.name, v)
            assert hi is None or (v < hi if meta["hi_open"] else v <= hi), (f.name, v)


# --- models -----------------------------------------------------------------------------------------

def _broken(tiny_folder, tmp_path, how):
    folder = tmp_path / how
    shutil.copytree(tiny_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "corrupt":
        weights.write_bytes(b"\x00" * 64 + weights.read_bytes()[64:])
    elif how == "no_config":
        (folder / "unet" / "config.json").unlink()
    elif how == "pickle_only":
        weights.unlink()
        (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle would run code")
    return folder


@pytest.mark.parametrize("how", ["truncated", "empty", "corrupt", "no_config", "pickle_only"])
def test_a_broken_model_folder_gets_one_message_naming_the_part(tiny_folder, tmp_path, how):
    folder = _broken(tiny_folder, tmp_path, how)
    with pytest.raises(BackboneNotFound, match=f"cannot (load its U-Net|read {folder / 'unet'})"):
        load_backbone(str(folder))
    image = _png(tmp_path / "i.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    r = _cli("edit", "sdedit", image, "-s", "a", "-t", "b", "--model", folder, "-o", tmp_path / "o.png")
    assert r.exit_code == 1 and ("U-Net" in r.output or "unet" in r.output) and "Traceback" not in r.output


@pytest.mark.parametrize("args", [["generate", "a man", "--cfg", "nan"], ["train", "vae", "--lr", "nan"],
                                  ["train", "all", "--hours", "inf"], ["generate", "a man", "--cfg", "-1"]])
def test_numbers_of_the_other_commands_are_checked_too(args, tmp_path):
    r = _cli(*args, *(["-o", tmp_path / "g.png"] if args[0] == "generate" else []))
    assert r.exit_code == 2 and ("is not a finite number" in r.output or "not in the range" in r.output)


def _extremes(field):
    """The ends of a numeric setting's range that a user may give (and a large value where it is open)."""
    lo, hi, meta = field.metadata.get("lo"), field.metadata.get("hi"), field.metadata
    is_int = field.type.startswith("int")
    out = []
    if lo is not None:
        out.append(lo + (1 if is_int else 1e-3) if meta["lo_open"] else lo)
    out.append(hi - (1 if is_int else 1e-3) if hi is not None and meta["hi_open"] else hi if hi is not None
               else 10**6)
    return out


EXTREMES = [(m, f.name, v) for m in sorted(REGISTRY) for f in _numeric_fields(m) for v in _extremes(f)
            if f.name not in ("steps", "mask_step") and not (f.name.endswith("update_steps") and v > 8)
            and not (f.name.endswith("grad_steps") and v > 4) and not (f.name == "mask_samples" and v > 4)
            and not (f.name in ("embedding_steps", "finetune_steps") and v > 4)]


@pytest.mark.parametrize("case", EXTREMES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_extreme_settings_give_a_finite_image_or_a_clear_error(case, tiny):
    """Valid settings at the ends of their ranges (counts bounded for time) never give a non-finite image or
    a traceback: a picture, or a clear error before or after the run."""
    from semedit.methods import EditRequest, run_edit

    method, name, value = case
    small = {k: v for k, v in {"steps": 4, "mask_samples": 2, "embedding_steps": 2, "finetune_steps": 2}.items()
             if k != name}
    small = {k: v for k, v in small.items() if k in {f.name for f in dataclasses.fields(REGISTRY[method].config)}}
    backbone, size = tiny, SIZE
    if REGISTRY[method].segmentation:  # a map edit, with the classifiers of the embedded family
        from semedit.service import get_backbone

        backbone, size = get_backbone("toon-64"), 64
        rec = sample_record(3)
        source = render(rec).seg.astype(np.int64)
        edited = render(rec.replace(glasses="round" if rec.glasses == "none" else "none")).seg.astype(np.int64)
    try:
        config = make_config(method, **{**small, name: value})
        image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
        request = (EditRequest(image, "", edited_seg=edited, source_seg=source) if REGISTRY[method].segmentation
                   else EditRequest(image, "a cartoon woman", "a cartoon man"))
        result = run_edit(method, backbone, request, config)
    except ValueError as e:
        assert str(e)
        return
    assert result.image.dtype == np.uint8 and result.image.shape == (size, size, 3)

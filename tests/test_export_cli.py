import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from semedit.cli import main
from semedit.world import ToonRecord, export_dataset, read_export, record_seed, render, sample_record
from semedit.training.datasets import ToonDataset, ToonFolderDataset


def test_export_round_trips(tmp_path):
    out = export_dataset(tmp_path / "a", 5, seed=11, workers=1, progress=False)
    info, meta = read_export(out)
    assert info["count"] == 5 and info["seed"] == 11 and "headwear" in info["classes"]
    assert [m["index"] for m in meta] == list(range(5))
    for m in meta:
        rec = ToonRecord.from_dict(m["record"])
        assert rec == sample_record(record_seed(11, m["index"]))
        r = render(rec)
        assert np.array_equal(np.array(Image.open(out / "images" / m["file"])), r.image)
        assert np.array_equal(np.array(Image.open(out / "seg" / m["file"])), r.seg)
        assert np.array_equal(np.array(Image.open(out / "pose" / m["file"])), r.pose)
        assert np.array_equal(np.array(Image.open(out / "scribble" / m["file"])), r.scribble)
        assert m["captions"]["full"].startswith("a cartoon")
    # parallel export writes the same files
    out2 = export_dataset(tmp_path / "b", 5, seed=11, workers=2, progress=False)
    assert (out / "metadata.jsonl").read_text() == (out2 / "metadata.jsonl").read_text()
    for m in meta:
        assert (out / "images" / m["file"]).read_bytes() == (out2 / "images" / m["file"]).read_bytes()


def test_export_refuses_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        export_dataset(tmp_path, 2, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    export_dataset(tmp_path, 2, overwrite=True, workers=1, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "precious" and (tmp_path / "metadata.jsonl").exists()
    with pytest.raises(ValueError, match="at least 1"):
        export_dataset(tmp_path / "x", 0)
    with pytest.raises(FileNotFoundError, match="not a toon export"):
        read_export(tmp_path / "keep.txt")


def test_torch_datasets_agree(tmp_path):
    ds = ToonDataset(3, seed=4)
    item = ds[1]
    assert item["image"].shape == (3, 64, 64) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["seg"].dtype == torch.long and item["pose"].shape == (3, 64, 64)
    assert item["scribble"].shape == (3, 64, 64)
    export_dataset(tmp_path, 3, seed=4, workers=1, progress=False)
    folder = ToonFolderDataset(tmp_path)
    assert len(folder) == 3
    other = folder[1]
    for k in ("image", "seg", "pose", "scribble"):
        assert torch.equal(item[k], other[k]), k
    assert item["caption"] == other["caption"] and item["record"] == other["record"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 64, 64) and len(batch["caption"]) == 3
    with pytest.raises(IndexError):
        ds[3]


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_sample_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "grid.png"
    r = run("world", "sample", "-n", "2", "-o", str(out))
    assert r.exit_code == 0, r.output
    before = out.read_bytes()
    assert Image.open(out).size[0] > 2 * 64
    r = run("world", "sample", "-n", "3", "-o", str(out))
    assert r.exit_code != 0 and "exists" in r.output and "--overwrite" in r.output
    assert out.read_bytes() == before
    r = run("world", "sample", "-n", "3", "-o", str(out), "--overwrite")
    assert r.exit_code == 0 and out.read_bytes() != before


@pytest.mark.parametrize("args, message", [
    (["world", "sample", "-n", "0", "-o", "x.png"], "-n"),
    (["world", "sample", "--size", "100", "-o", "x.png"], "--size"),
    (["world", "sample", "-o", "x.jpg"], "must end in .png"),
    (["world", "sample"], "Missing option"),
    (["world", "edit", "--set", "hat=tall", "-o", "x.png"], "unknown attribute 'hat'"),
    (["world", "edit", "--set", "expression", "-o", "x.png"], "ATTRIBUTE=VALUE"),
    (["world", "edit", "--set", "expression=bored", "-o", "x.png"], "not one of"),
    (["world", "edit", "--set", "head_tilt=abc", "-o", "x.png"], "needs a number"),
    (["world", "edit", "--set", "head_tilt=45", "-o", "x.png"], "outside"),
    (["world", "export", "out", "-n", "-3"], "-n"),
    (["world", "pairs", "--kind", "hair", "-o", "x.png"], "--kind"),
])
def test_cli_rejects_bad_arguments(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = run(*args)
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert not (tmp_path / "x.png").exists()
    assert "Traceback" not in r.output


def test_cli_export_edit_pairs_sheet(tmp_path):
    r = run("world", "export", str(tmp_path / "d"), "-n", "3", "--workers", "1")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2]
    r = run("world", "export", str(tmp_path / "d"), "-n", "3")
    assert r.exit_code != 0 and "not empty" in r.output
    for args in (["edit", "--set", "costume=sheep", "--set", "head_x=2"], ["pairs", "-n", "2"], ["sheet"]):
        out = tmp_path / f"{args[0]}.png"
        r = run("world", *args, "-o", str(out))
        assert r.exit_code == 0, r.output
        assert Image.open(out).size[0] > 100

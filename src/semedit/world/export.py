"""Exporting rendered samples to a folder (PNGs + JSONL metadata) and reading them back.

Layout of an export folder:

    world.json            seed, count, size, class list, semedit version
    metadata.jsonl        one line per sample: index, file, record, captions, keypoints
    images/000000.png     RGB render
    seg/000000.png        palette PNG whose pixel values are class ids (SEG_CLASSES)
    pose/000000.png       OpenPose-style drawing
    scribble/000000.png   edge map (white on black)

Sample i depends only on (seed, i), so exports are deterministic and can be made in parallel.
"""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__
from .attributes import ToonRecord, record_seed, sample_record
from .captions import captions
from .render import SEG_CLASSES, SEG_PALETTE, render

KINDS = ("images", "seg", "pose", "scribble")


def seg_to_png(seg: np.ndarray) -> Image.Image:
    img = Image.fromarray(seg, mode="P")
    img.putpalette(SEG_PALETTE.flatten().tolist())
    return img


def sample_metadata(index: int, rec: ToonRecord, keypoints) -> dict:
    return {"index": index, "file": f"{index:06d}.png", "record": rec.to_dict(), "captions": captions(rec),
            "keypoints": keypoints}


def _export_one(job) -> dict:
    out, seed, index, size = job
    rec = sample_record(record_seed(seed, index))
    r = render(rec, size)
    name = f"{index:06d}.png"
    Image.fromarray(r.image).save(out / "images" / name)
    seg_to_png(r.seg).save(out / "seg" / name)
    Image.fromarray(r.pose).save(out / "pose" / name)
    Image.fromarray(r.scribble).save(out / "scribble" / name)
    return sample_metadata(index, rec, r.keypoints)


def export_dataset(out: str | Path, n: int, seed: int = 0, size: int = 64, workers: int | None = None,
                   overwrite: bool = False, progress: bool = True) -> Path:
    """Render samples 0..n-1 of the world with base `seed` into `out`.

    Refuses a non-empty folder unless `overwrite` (then only this export's files are replaced).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size not in (64, 128, 256):
        raise ValueError(f"size must be 64, 128 or 256, got {size}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to write into it")
    for kind in KINDS:
        (out / kind).mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(out, seed, i, size) for i in range(n)]
    tmp = out / "metadata.jsonl.tmp"
    from tqdm import tqdm

    with open(tmp, "w") as meta, tqdm(total=n, desc="rendering", unit="img", disable=not progress) as bar:
        if workers > 1:
            with get_context("spawn").Pool(workers) as pool:
                for line in pool.imap(_export_one, jobs, chunksize=64):
                    meta.write(json.dumps(line) + "\n")
                    bar.update()
        else:
            for job in jobs:
                meta.write(json.dumps(_export_one(job)) + "\n")
                bar.update()
    tmp.replace(out / "metadata.jsonl")
    (out / "world.json").write_text(json.dumps({
        "seed": seed, "count": n, "size": size, "classes": list(SEG_CLASSES), "semedit_version": __version__,
    }, indent=2) + "\n")
    return out


def read_export(folder: str | Path) -> tuple[dict, list[dict]]:
    """(world.json, metadata lines) of an export folder, with a clear error if it is not one."""
    folder = Path(folder)
    info_path, meta_path = folder / "world.json", folder / "metadata.jsonl"
    if not info_path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not a toon export (no world.json / metadata.jsonl); "
                                "make one with `semedit world export`")
    info = json.loads(info_path.read_text())
    with open(meta_path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return info, lines


TOON_PNG_KEY = "toon-record"  # PNG text chunk holding the record a toon image was rendered from


def save_toon_png(path, rec: ToonRecord, size: int = 64) -> np.ndarray:
    """Render `rec` to a PNG that carries its record, so edits can derive the source prompt and maps (sizes
    the renderer has no grid for are resized from 64 px)."""
    from PIL.PngImagePlugin import PngInfo

    from .maps import resize_square

    image = render(rec, size).image if size in (64, 128, 256) else resize_square(render(rec, 64).image, size)
    meta = PngInfo()
    meta.add_text(TOON_PNG_KEY, json.dumps(rec.to_dict()))
    Image.fromarray(image).save(path, format="PNG", pnginfo=meta)
    return image


def read_toon_record(path) -> ToonRecord | None:
    """The record stored in a toon PNG by `save_toon_png`, or None for any other image."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}).get(TOON_PNG_KEY)
    return ToonRecord.from_dict(json.loads(text)) if text else None

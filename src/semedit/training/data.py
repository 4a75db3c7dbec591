"""Training data: world renders cached as uint8 arrays (rendered once, in parallel), and
diptych pairs. Training loops read these instead of rendering on every step."""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..world import ToonRecord, diptych, record_seed, render, sample_pair, sample_record

CACHE_KINDS = ("image", "seg", "pose", "scribble")


def _render_one(job):
    seed, index, size = job
    rec = sample_record(record_seed(seed, index))
    r = render(rec, size)
    return rec.to_dict(), r.image, r.seg, r.pose, r.scribble


def _pair_one(job):
    seed, index, size = job
    source, target, kind = sample_pair(record_seed(seed, index))
    d = diptych(source, target, size, template=kind)
    return source.to_dict(), target.to_dict(), d.image, d.caption, d.left_caption, d.right_caption


def _map(fn, jobs, workers, desc):
    from tqdm import tqdm

    workers = workers or min(os.cpu_count() or 1, 8)
    if workers == 1:
        return [fn(j) for j in tqdm(jobs, desc=desc)]
    with get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(fn, jobs, chunksize=64), total=len(jobs), desc=desc))


class RenderCache:
    """n world samples as arrays: image (n,H,W,3), seg (n,H,W), pose (n,H,W,3), scribble (n,H,W),
    plus their records. Built once into a folder and memory-mapped afterwards."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        meta = json.loads((folder / "cache.json").read_text())
        self.seed, self.size, self.n = meta["seed"], meta["size"], meta["n"]
        self.arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in CACHE_KINDS}
        self.records = [ToonRecord.from_dict(r) for r in json.loads((folder / "records.json").read_text())]

    def __len__(self):
        return self.n

    @staticmethod
    def build(folder: str | Path, n: int, seed: int, size: int = 64, workers: int | None = None) -> "RenderCache":
        folder = Path(folder)
        meta_path = folder / "cache.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta == {"n": n, "seed": seed, "size": size}:
                return RenderCache(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = _map(_render_one, [(seed, i, size) for i in range(n)], workers, f"rendering {folder.name}")
        for k, kind in enumerate(CACHE_KINDS, start=1):
            np.save(folder / f"{kind}.npy", np.stack([o[k] for o in out]))
        (folder / "records.json").write_text(json.dumps([o[0] for o in out]))
        meta_path.write_text(json.dumps({"n": n, "seed": seed, "size": size}))
        return RenderCache(folder)


class PairCache:
    """n diptychs (64 x 128) with their shared and per-half captions."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.image = np.load(folder / "image.npy", mmap_mode="r")
        self.meta = json.loads((folder / "pairs.json").read_text())

    def __len__(self):
        return len(self.meta)

    @staticmethod
    def build(folder: str | Path, n: int, seed: int, size: int = 64, workers: int | None = None) -> "PairCache":
        folder = Path(folder)
        done = folder / "cache.json"
        if done.exists() and json.loads(done.read_text()) == {"n": n, "seed": seed, "size": size}:
            return PairCache(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = _map(_pair_one, [(seed, i, size) for i in range(n)], workers, f"rendering {folder.name}")
        np.save(folder / "image.npy", np.stack([o[2] for o in out]))
        (folder / "pairs.json").write_text(json.dumps([
            {"source": o[0], "target": o[1], "caption": o[3], "left_caption": o[4], "right_caption": o[5]}
            for o in out]))
        done.write_text(json.dumps({"n": n, "seed": seed, "size": size}))
        return PairCache(folder)


def build_caches(cache_dir: str | Path, count: int = 40000, heldout: int = 2000, pairs: int = 10000,
                 workers: int | None = None) -> None:
    """The training caches: world samples (seed 1), held-out samples (seed 2), diptychs (seed 3)."""
    cache_dir = Path(cache_dir)
    RenderCache.build(cache_dir / "train", count, seed=1, workers=workers)
    RenderCache.build(cache_dir / "heldout", heldout, seed=2, workers=workers)
    PairCache.build(cache_dir / "pairs", pairs, seed=3, workers=workers)

"""Torch datasets over the toon world: rendered on the fly, or read from an export folder.

Items are dicts: `image` (3xHxW float in [-1, 1], the diffusers convention), `seg` (HxW long class
ids), `pose` and `scribble` (3xHxW float in [0, 1], the ControlNet conditioning convention),
`caption` (the full caption), `captions` (all of them), `record` (attribute dict) and `index`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..models.images import control_tensor, to_tensor
from ..world import ToonRecord, captions, read_export, record_seed, render, sample_record


def _item(index, rec: ToonRecord, image, seg, pose, scribble) -> dict:
    caps = captions(rec)
    return {
        "index": index,
        "image": to_tensor(image[None])[0],
        "seg": torch.from_numpy(np.ascontiguousarray(seg)).long(),
        "pose": control_tensor(pose[None])[0],
        "scribble": control_tensor(scribble[None])[0].contiguous(),
        "caption": caps["full"],
        "captions": caps,
        "record": rec.to_dict(),
    }


class ToonDataset(Dataset):
    """`n` samples of the world with base `seed`, rendered when asked for (sample i depends only
    on (seed, i), so it equals sample i of `semedit world export` with the same seed)."""

    def __init__(self, n: int, seed: int = 0, size: int = 64):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n, self.seed, self.size = n, seed, size

    def __len__(self) -> int:
        return self.n

    def record(self, index: int) -> ToonRecord:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return sample_record(record_seed(self.seed, index))

    def __getitem__(self, index: int) -> dict:
        rec = self.record(index)
        r = render(rec, self.size)
        return _item(index, rec, r.image, r.seg, r.pose, r.scribble)


class ToonFolderDataset(Dataset):
    """The samples of an export folder (see `semedit.world.export`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.info, self.meta = read_export(self.folder)

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, index: int) -> dict:
        m = self.meta[index]
        load = lambda kind: np.array(Image.open(self.folder / kind / m["file"]))  # noqa: E731
        return _item(m["index"], ToonRecord.from_dict(m["record"]), load("images"), load("seg"), load("pose"),
                     load("scribble"))

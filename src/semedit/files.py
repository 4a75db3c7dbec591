"""Writing results safely, for every layer: check that outputs can be written before the work starts, and
write several files so that a failure leaves all of them or none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable


def check_new_files(paths: Iterable, overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist (unless `overwrite`) or cannot be written: a folder in
    the way, or a parent that is not a writable folder."""
    paths = [Path(p) for p in paths]
    clash = [str(p) for p in paths if p.exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{', '.join(clash)} exist{'s' if len(clash) == 1 else ''}; pass --overwrite "
                              "(overwrite=True) to replace")
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder; name a file to write")
        parent = p.parent
        while not parent.exists():  # the nearest existing folder decides whether it can be created
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not
                                                                               os.access(p, os.W_OK)):
            raise PermissionError(f"cannot write {p}: {parent} is not a writable folder")


def write_together(writes: list[tuple[Path, Callable[[Path], object]]]) -> list[Path]:
    """Run each `write(temporary path)` into a hidden file beside its destination, then move every file
    into place; if any write fails, none of the destinations is touched and the temporaries are removed."""
    writes = [(Path(p), w) for p, w in writes]
    for p, _ in writes:
        p.parent.mkdir(parents=True, exist_ok=True)
    temporary = [p.with_name(f".{p.name}.partial") for p, _ in writes]
    try:
        for (_, write), tmp in zip(writes, temporary):
            write(tmp)
        for (final, _), tmp in zip(writes, temporary):
            os.replace(tmp, final)
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    return [p for p, _ in writes]

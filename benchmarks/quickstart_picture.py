"""The README's picture of the quickstart edit: input | Eq. 7 mask | guidance image | output, from the files
`bash scripts/quickstart.sh` writes (out/edited*.png); one row per edit given.

    bash scripts/quickstart.sh && .venv/bin/python benchmarks/quickstart_picture.py

Several edits of the same input, one row each ("label=path"; docs/benchmark.md, "The quickstart's edit"):

    .venv/bin/python benchmarks/quickstart_picture.py --edited "defaults=out/edited.png" \
        --edited "tau 0.95=out/t95.png" --out docs/images/ito_tune/quickstart_drift.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from semedit.world import resize_square
from semedit.world.sheets import grid, labelled

COLUMNS = ("input", "mask (Eq. 7)", "guidance image", "output")


def row_files(input_path: Path, edited: Path) -> list[Path]:
    """The row's four files; the guidance image's cell is left out when the edit made none (lambda = 1)."""
    files = [input_path, edited.with_suffix(".mask.png"), edited.with_suffix(".guidance_image.png"), edited]
    if not files[2].exists():
        files[2] = None
    if missing := [str(p) for p in files if p is not None and not p.exists()]:
        raise SystemExit(f"{', '.join(missing)} missing: run bash scripts/quickstart.sh first")
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="src/semedit/examples/toon.png")
    ap.add_argument("--edited", action="append", default=[], help='"label=path" or a path (repeatable; default: '
                    "out/edited.png, labelled hair -> red)")
    ap.add_argument("--out", default="docs/images/quickstart.png")
    ap.add_argument("--zoom", type=int, default=3)
    args = ap.parse_args()
    rows = [(label or "hair -> red", Path(path))
            for label, _, path in (e.rpartition("=") for e in args.edited or ["out/edited.png"])]
    files = [row_files(Path(args.input), path) for _, path in rows]
    size = np.asarray(Image.open(rows[0][1])).shape[0]
    blank = np.full((size, size, 3), 255, np.uint8)
    cells = [[blank if p is None else resize_square(np.asarray(Image.open(p).convert("RGB")), size) for p in row]
             for row in files]
    img = Image.fromarray(grid(cells))
    img = img.resize((img.width * args.zoom, img.height * args.zoom), Image.NEAREST)
    labelled(img, [label for label, _ in rows], list(COLUMNS), (size + 2) * args.zoom, 2 * args.zoom).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

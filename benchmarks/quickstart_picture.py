"""The README's picture of the quickstart edit: input | Eq. 7 mask | guidance image | output, from the files
`bash scripts/quickstart.sh` writes (out/edited*.png).

    bash scripts/quickstart.sh && .venv/bin/python benchmarks/quickstart_picture.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from semedit.world import resize_square
from semedit.world.sheets import grid, labelled


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="src/semedit/examples/toon.png")
    ap.add_argument("--edited", default="out/edited.png")
    ap.add_argument("--out", default="docs/images/quickstart.png")
    ap.add_argument("--zoom", type=int, default=3)
    args = ap.parse_args()
    edited = Path(args.edited)
    files = {"input": Path(args.input), "mask (Eq. 7)": edited.with_suffix(".mask.png"),
             "guidance image": edited.with_suffix(".guidance_image.png"), "output": edited}
    if not files["guidance image"].exists():  # lambda = 1 makes none
        del files["guidance image"]
    if missing := [str(p) for p in files.values() if not p.exists()]:
        raise SystemExit(f"{', '.join(missing)} missing: run bash scripts/quickstart.sh first")
    size = np.asarray(Image.open(edited)).shape[0]
    cells = [resize_square(np.asarray(Image.open(path).convert("RGB")), size) for path in files.values()]
    img = Image.fromarray(grid([cells]))
    img = img.resize((img.width * args.zoom, img.height * args.zoom), Image.NEAREST)
    labelled(img, ["hair -> red"], list(files), (size + 2) * args.zoom, 2 * args.zoom).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

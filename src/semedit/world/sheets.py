"""Picture sheets of the world (sample grids, one row per attribute, edits, diptychs) as PIL images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .attributes import CATEGORICAL, ToonRecord
from .edits import Diptych, GroundTruthEdit
from .render import ToonRender, colourise_seg


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x


def zoom_nearest(img: np.ndarray, zoom: int) -> Image.Image:
    pil = Image.fromarray(img)
    return pil.resize((pil.width * zoom, pil.height * zoom), Image.NEAREST) if zoom > 1 else pil


def grid(cells: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Rows of equally sized HxWx3 cells, separated by white padding."""
    h, w = cells[0][0].shape[:2]
    cols = max(len(r) for r in cells)
    out = np.full((len(cells) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = _rgb(c)
    return out


def labelled(img: Image.Image, left: list[str], top: list[str] | None, cell: int, pad: int) -> Image.Image:
    """`img` (a `grid`, zoomed) with a label left of every row and, if given, above every column."""
    font = ImageFont.load_default()
    left_width = 8 + max(int(font.getlength(t)) for t in left)
    top_h = 16 if top else 0
    out = Image.new("RGB", (img.width + left_width, img.height + top_h), "white")
    out.paste(img, (left_width, top_h))
    d = ImageDraw.Draw(out)
    for i, text in enumerate(left):
        d.text((4, top_h + pad + i * (cell + pad) + cell // 2 - 6), text, fill="black", font=font)
    for j, text in enumerate(top or []):
        d.text((left_width + pad + j * (cell + pad) + 2, 2), text, fill="black", font=font)
    return out


def sample_sheet(renders: list[ToonRender], zoom: int = 3) -> Image.Image:
    """Columns = samples; rows = image, segmentation, pose drawing, scribble."""
    rows = [[r.image for r in renders], [colourise_seg(r.seg) for r in renders],
            [r.pose for r in renders], [r.scribble for r in renders]]
    img = zoom_nearest(grid(rows), zoom)
    cell = renders[0].image.shape[0] * zoom
    return labelled(img, ["image", "segmentation", "pose", "scribble"], None, cell, 2 * zoom)


def attribute_sheet(base: ToonRecord, render_fn, zoom: int = 2) -> Image.Image:
    """One row per categorical attribute, one column per value, everything else from `base`."""
    rows, names = [], []
    for attr, values in CATEGORICAL.items():
        cells = []
        for v in values:
            rec = base.replace(**{attr: v})
            if attr == "presentation" and v == "woman":
                rec = rec.replace(beard="none")
            if attr == "beard" and v != "none":
                rec = rec.replace(presentation="man")
            if attr == "background_colour":
                rec = rec.replace(background="plain")
            if attr == "shirt_colour":
                rec = rec.replace(costume="normal")
            cells.append(render_fn(rec).image)
        rows.append(cells)
        names.append(attr)
    img = zoom_nearest(grid(rows), zoom)
    cell = rows[0][0].shape[0] * zoom
    out = labelled(img, names, None, cell, 2 * zoom)
    # value names go into the cells' top-left corner
    d = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    left = out.width - img.width
    for i, (attr, values) in enumerate(CATEGORICAL.items()):
        for j, v in enumerate(values):
            x, y = left + 2 * zoom + j * (cell + 2 * zoom), 2 * zoom + i * (cell + 2 * zoom)
            d.rectangle([x, y, x + 6 * len(v) + 3, y + 11], fill="white")
            d.text((x + 2, y), v, fill="black", font=font)
    return out


def edit_sheet(edits: list[GroundTruthEdit], zoom: int = 3) -> Image.Image:
    """One row per edit: source, target, true edit region, changed pixels."""
    rows, names = [], []
    for e in edits:
        region = np.where(e.region, 255, 0).astype(np.uint8)
        diff = (e.source_render.image != e.target_render.image).any(-1)
        rows.append([e.source_render.image, e.target_render.image, region, np.where(diff, 255, 0).astype(np.uint8)])
        names.append(", ".join(f"{k}={getattr(e.target, k)}" for k in e.changed))
    img = zoom_nearest(grid(rows), zoom)
    cell = rows[0][0].shape[0] * zoom
    return labelled(img, names, ["source", "target", "region", "changed"], cell, 2 * zoom)


def diptych_sheet(pairs: list[Diptych], zoom: int = 3) -> Image.Image:
    rows = [[np.concatenate([p.image, p.pose], 1)] for p in pairs]
    img = zoom_nearest(grid(rows), zoom)
    cell = pairs[0].image.shape[0] * zoom
    names = []
    for p in pairs:
        a, b = p.left.to_dict(), p.right.to_dict()
        names.append(" ".join(f"{a[k]}->{b[k]}" for k in a if a[k] != b[k]))
    return labelled(img, names, None, cell, 2 * zoom)

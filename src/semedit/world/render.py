"""Rendering a `ToonRecord` to an image, its segmentation map, pose drawing and scribble map.

The scene is drawn back to front (painter's order) at `supersample` x the output size and
averaged down, so edges are anti-aliased; labels are downsampled by majority vote. Every part of
the face lives in a *head frame* (unit = head radius, rotated by the head tilt), the torso in a
*body frame*, the scene in canvas units (pixels of the 64x64 canvas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .attributes import ToonRecord
from .maps import draw_pose, scribble_map
from .raster import (Canvas, Frame, arc_points, circle, downsample_majority, downsample_mean, ellipse,
                     polygon, polyline, rect, superellipse)

# The segmentation classes, in id order (documented in docs/world.md).
SEG_CLASSES: tuple[str, ...] = (
    "background", "skin", "hair", "eyes", "brows", "mouth", "glasses", "clothes", "headwear",
    "beard", "tears", "nose", "ears",
)
C = {name: i for i, name in enumerate(SEG_CLASSES)}

SEG_PALETTE = np.array([
    [0, 0, 0], [255, 204, 170], [140, 70, 20], [255, 255, 255], [90, 50, 20], [220, 40, 60],
    [60, 220, 255], [40, 90, 230], [255, 210, 0], [120, 100, 60], [120, 200, 255], [230, 140, 110],
    [200, 120, 90],
], np.uint8)

SKIN = {"light": (1.0, 0.87, 0.77), "fair": (0.96, 0.78, 0.64), "tan": (0.86, 0.64, 0.45),
        "brown": (0.64, 0.43, 0.28), "dark": (0.40, 0.26, 0.17)}
HAIR = {"black": (0.13, 0.11, 0.11), "brown": (0.45, 0.27, 0.12), "blonde": (0.95, 0.82, 0.45),
        "red": (0.80, 0.30, 0.10), "grey": (0.70, 0.70, 0.72), "blue": (0.20, 0.42, 0.88)}
IRIS = {"brown": (0.45, 0.25, 0.1), "blue": (0.2, 0.5, 0.95), "green": (0.2, 0.65, 0.3),
        "grey": (0.55, 0.58, 0.62)}
SHIRT = {"red": (0.86, 0.2, 0.2), "blue": (0.2, 0.4, 0.86), "green": (0.25, 0.66, 0.3),
         "yellow": (0.96, 0.8, 0.2), "white": (0.96, 0.96, 0.96), "purple": (0.56, 0.3, 0.76)}
PLAIN = {"sky": (0.62, 0.8, 0.95), "peach": (0.99, 0.82, 0.7), "mint": (0.7, 0.92, 0.8),
         "lavender": (0.8, 0.75, 0.96), "grey": (0.78, 0.78, 0.8), "lemon": (0.98, 0.95, 0.66)}
# face shape -> (half width, half height, superellipse power, jaw taper)
FACE = {"round": (0.95, 1.0, 2.0, 0.0), "oval": (0.82, 1.08, 2.0, 0.0),
        "square": (0.9, 1.0, 3.2, 0.0), "heart": (0.94, 1.05, 2.0, 0.3)}

DARK = (0.12, 0.08, 0.07)
WHITE = (0.97, 0.97, 0.96)
HEAD_RADIUS = 14.0  # canvas px at head_scale 1
HEAD_CENTRE = (32.0, 27.0)
EYE_U, EYE_V = 0.38, -0.02


@dataclass
class ToonRender:
    """What one record renders to. Images are uint8 HxWx3, maps uint8 HxW."""
    image: np.ndarray
    seg: np.ndarray
    pose: np.ndarray
    scribble: np.ndarray
    keypoints: dict[str, tuple[float, float]]  # OpenPose names -> (x, y) in output pixels
    fine_label: np.ndarray = field(repr=False)  # supersampled labels (for exact edit regions)
    fine_tags: dict[str, np.ndarray] = field(repr=False)
    supersample: int = 4


def _shade(c, k):
    return tuple(min(1.0, x * k) for x in c)


def head_frame(canvas: Canvas, rec: ToonRecord) -> Frame:
    unit = HEAD_RADIUS * rec.head_scale
    return canvas.frame(HEAD_CENTRE[0] + rec.head_x, HEAD_CENTRE[1] + rec.head_y, unit, rec.head_tilt,
                        extent=(-2.1, -2.2, 2.1, 1.9))


def body_frame(canvas: Canvas, rec: ToonRecord) -> Frame:
    unit = HEAD_RADIUS * rec.head_scale
    return canvas.frame(HEAD_CENTRE[0] + rec.head_x, HEAD_CENTRE[1], unit, 0.0,
                        extent=(-2.4, 0.3, 2.4, 64.0 / unit))


def face_mask(f: Frame, shape: str, grow: float = 0.0) -> np.ndarray:
    rx, ry, p, taper = FACE[shape]
    width = (rx + grow) * (1.0 - taper * np.clip(f.v, 0.0, 1.0))
    return np.abs(f.u / width) ** p + np.abs(f.v / (ry + grow)) ** p <= 1.0


# --- scene ----------------------------------------------------------------------------------------

def _background(cv: Canvas, rec: ToonRecord) -> None:
    full = cv.frame()
    bg = C["background"]
    rng = np.random.default_rng(rec.scene_seed)
    kind = rec.background

    def area(x0, y0, x1, y1):
        return cv.frame(extent=(x0, y0, x1, y1))

    if kind == "plain":
        full.paint(True, PLAIN[rec.background_colour], bg)
    elif kind == "beach":
        full.paint(True, (0.56, 0.8, 0.98), bg)
        phase = rng.uniform(0, 2 * math.pi)
        full.paint(full.v >= 30.0, (0.16, 0.5, 0.8), bg)
        full.paint(full.v >= 41.0 + 1.5 * np.sin(full.u / 5.0 + phase), (0.95, 0.85, 0.6), bg)
        sx, sy = rng.uniform(6, 58), rng.uniform(5, 12)
        a = area(sx - 5, sy - 5, sx + 5, sy + 5)
        a.paint(circle(a, sx, sy, 4.0), (1.0, 0.9, 0.3), bg)
    elif kind == "forest":
        full.paint(True, (0.8, 0.92, 0.84), bg)
        full.paint(full.v >= 47.0, (0.36, 0.6, 0.3), bg)
        for _ in range(int(rng.integers(5, 8))):
            x, base = rng.uniform(0, 64), rng.uniform(46, 52)
            h, w = rng.uniform(20, 34), rng.uniform(10, 16)
            a = area(x - w, base - h - 1, x + w, base + 5)
            a.paint(rect(a, x - 1.2, base - 3, x + 1.2, base + 4), (0.45, 0.3, 0.15), bg)
            green = (0.12, 0.42 + rng.uniform(-0.06, 0.06), 0.2)
            a.paint(polygon(a, [(x - w / 2, base), (x + w / 2, base), (x, base - h)]), green, bg)
    elif kind == "city":
        full.paint(True, (0.76, 0.82, 0.92), bg)
        x = -rng.uniform(0, 6)
        while x < 64:
            w, h = rng.uniform(7, 14), rng.uniform(14, 40)
            top = 64.0 - h
            grey = rng.uniform(0.35, 0.6)
            a = area(x, top, x + w, 64)
            a.paint(rect(a, x, top, x + w - 0.8, 64), (grey, grey, grey + 0.08), bg)
            for wy in np.arange(top + 2.5, 62, 4.0):
                for wx in np.arange(x + 2.0, x + w - 2.5, 3.5):
                    if rng.random() < 0.7:
                        a.paint(rect(a, wx, wy, wx + 1.6, wy + 1.8), (1.0, 0.88, 0.45), bg)
            x += w
    elif kind == "night":
        full.paint(True, (0.07, 0.09, 0.24), bg)
        for _ in range(28):
            sx, sy = rng.uniform(0, 64), rng.uniform(0, 64)
            a = area(sx - 1, sy - 1, sx + 1, sy + 1)
            a.paint(circle(a, sx, sy, rng.uniform(0.35, 0.6)), (1.0, 1.0, 0.9), bg)
        mx, my = rng.uniform(6, 58), rng.uniform(5, 12)
        a = area(mx - 6, my - 6, mx + 6, my + 6)
        a.paint(circle(a, mx, my, 4.5), (0.98, 0.95, 0.75), bg)
        a.paint(circle(a, mx + 2.2, my - 1.0, 4.0), (0.07, 0.09, 0.24), bg)
    else:  # pragma: no cover - guarded by ToonRecord validation
        raise ValueError(kind)


def _body(cv: Canvas, rec: ToonRecord) -> None:
    b = body_frame(cv, rec)
    skin = SKIN[rec.skin_tone]
    cl = C["clothes"]
    b.paint(rect(b, -0.25, 0.5, 0.25, 1.9), skin, C["skin"])  # neck
    torso = superellipse(b, 0.0, 2.95, 1.75, 1.4, 2.6)
    costume = rec.costume
    if costume == "normal":
        b.paint(torso, SHIRT[rec.shirt_colour], cl)
        b.paint(torso & polygon(b, [(-0.32, 1.45), (0.32, 1.45), (0.0, 1.98)]), skin, C["skin"])
    elif costume == "santa":
        b.paint(torso, (0.84, 0.1, 0.12), cl)
        b.paint(torso & rect(b, -0.13, 1.5, 0.13, 4.0), WHITE, cl)
        b.paint(polyline(b, arc_points(0.0, 1.52, 0.5, 0.32, 0, 180), 0.26), WHITE, cl)
    elif costume == "royal":
        b.paint(torso, (0.55, 0.08, 0.22), cl)
        collar = ellipse(b, 0.0, 1.65, 1.25, 0.4)
        b.paint(collar, WHITE, cl)
        for u, v in [(-0.9, 1.62), (-0.5, 1.85), (0.0, 1.95), (0.5, 1.85), (0.9, 1.62), (-0.3, 1.5), (0.3, 1.5)]:
            b.paint(circle(b, u, v, 0.06), DARK, cl)
        b.paint(polyline(b, arc_points(0.0, 1.75, 0.75, 0.55, 20, 160), 0.1), (0.98, 0.78, 0.15), cl)
    elif costume == "flower":
        b.paint(torso, (0.28, 0.62, 0.28), cl)
        for s in (-1, 1):
            b.paint(torso & ellipse(b, s * 0.9, 1.95, 0.5, 0.2, s * 25.0), (0.5, 0.82, 0.4), cl)
    elif costume == "sheep":
        b.paint(torso, (0.8, 0.78, 0.74), cl)
        b.paint(superellipse(b, 0.0, 2.98, 1.7, 1.36, 2.6), (0.96, 0.95, 0.9), cl)
        for u in np.linspace(-1.3, 1.3, 7):
            v = 1.6 + 0.25 * (u / 1.3) ** 2
            b.paint(circle(b, u, v, 0.26), (0.8, 0.78, 0.74), cl)
            b.paint(circle(b, u, v, 0.21), (0.96, 0.95, 0.9), cl)


# --- head -----------------------------------------------------------------------------------------

def _hair_back(h: Frame, rec: ToonRecord) -> None:
    rx, ry = FACE[rec.face_shape][:2]
    col = _shade(HAIR[rec.hair_colour], 0.85)
    style = rec.hair_style
    top = ellipse(h, 0.0, -0.05, rx + 0.3, ry + 0.22)
    if style == "long":
        h.paint(top | rect(h, -(rx + 0.3), -0.05, rx + 0.3, 1.75), col, C["hair"])
    elif style == "bob":
        h.paint(top | rect(h, -(rx + 0.3), -0.05, rx + 0.3, 0.75), col, C["hair"])
    elif style == "curly":
        mask = ellipse(h, 0.0, -0.1, rx + 0.22, ry + 0.15)
        for a in np.linspace(150, 390, 13):
            t = math.radians(a)
            mask |= circle(h, (rx + 0.22) * math.cos(t), -0.1 + (ry + 0.15) * math.sin(t), 0.3)
        h.paint(mask, col, C["hair"])


def _hair_front(h: Frame, rec: ToonRecord) -> None:
    rx, ry = FACE[rec.face_shape][:2]
    col = HAIR[rec.hair_colour]
    style = rec.hair_style
    if style == "bald":
        return
    cap = ellipse(h, 0.0, -0.07, rx + 0.12, ry + 0.14)
    u, v = h.u, h.v
    if style == "short":
        mask = cap & ((v < -0.55 + 0.07 * np.cos(u * 9.0)) | ((np.abs(u) > rx - 0.1) & (v < 0.1)))
    elif style == "long":
        mask = cap & ((v < -0.5 + 0.14 * u) | ((np.abs(u) > rx - 0.17) & (v < 0.9)))
        mask |= rect(h, -(rx + 0.12), -0.1, -(rx - 0.17), 0.9) | rect(h, rx - 0.17, -0.1, rx + 0.12, 0.9)
    elif style == "bob":
        mask = cap & ((v < -0.42) | ((np.abs(u) > rx - 0.15) & (v < 0.75)))
        mask |= rect(h, -(rx + 0.12), -0.1, -(rx - 0.15), 0.75) | rect(h, rx - 0.15, -0.1, rx + 0.12, 0.75)
    elif style == "curly":
        mask = cap & ((v < -0.5 + 0.1 * np.abs(np.sin(u * 7.0))) | ((np.abs(u) > rx - 0.1) & (v < 0.3)))
    else:  # bun
        mask = (cap & (v < -0.62 + 0.1 * u * u)) | circle(h, 0.0, -ry - 0.22, 0.36)
    h.paint(mask, col, C["hair"])


def _eyes(h: Frame, rec: ToonRecord) -> None:
    eyes = C["eyes"]
    expr = rec.expression
    woman = rec.presentation == "woman"
    for s in (-1, 1):
        ex, ey = s * EYE_U, EYE_V
        f = h.sub(ex - 0.35, ey - 0.3, ex + 0.35, ey + 0.3)
        if rec.eyes == "closed":
            if expr in ("smiling", "laughing"):  # happy closed eyes curve up: ^
                pts = arc_points(ex, ey + 0.06, 0.17, 0.12, 200, 340)
            else:  # relaxed lids curve down
                pts = arc_points(ex, ey - 0.04, 0.17, 0.09, 20, 160)
            f.paint(polyline(f, pts, 0.075), DARK, eyes)
        else:
            rx, ry = {"shocked": (0.2, 0.19), "laughing": (0.2, 0.1), "angry": (0.2, 0.12)}.get(expr, (0.2, 0.15))
            f.paint(ellipse(f, ex, ey, rx + 0.04, ry + 0.04), DARK, eyes)
            white = ellipse(f, ex, ey, rx, ry)
            f.paint(white, WHITE, eyes)
            ix = ex + {"left": -0.09, "centre": 0.0, "right": 0.09}[rec.gaze]
            f.paint(white & circle(f, ix, ey, 0.11), IRIS[rec.eye_colour], eyes)
            f.paint(white & circle(f, ix, ey, 0.05), DARK, eyes)
            if expr == "angry":  # a lowered inner lid
                f.paint(white & (f.v < ey - 0.02 + s * 0.35 * (f.u - ex)), DARK, eyes)
        if woman:
            f.paint(polyline(f, [(ex + s * 0.17, ey - 0.08), (ex + s * 0.28, ey - 0.16)], 0.055), DARK, eyes)


def _brows(h: Frame, rec: ToonRecord) -> None:
    col = _shade(HAIR[rec.hair_colour], 0.65)
    # (inner, middle, outer) heights, for the person's left brow; mirrored for the right
    heights = {"neutral": (-0.33, -0.37, -0.34), "smiling": (-0.36, -0.4, -0.36),
               "laughing": (-0.36, -0.44, -0.37), "angry": (-0.22, -0.31, -0.42),
               "shocked": (-0.46, -0.54, -0.46), "crying": (-0.46, -0.4, -0.3)}[rec.expression]
    width = 0.11 if rec.expression == "angry" else 0.085
    for s in (-1, 1):
        pts = [(s * 0.2, heights[0]), (s * 0.38, heights[1]), (s * 0.56, heights[2])]
        f = h.sub(-0.7, -0.7, 0.7, -0.1)
        f.paint(polyline(f, pts, width), col, C["brows"])


def _mouth(h: Frame, rec: ToonRecord) -> None:
    f = h.sub(-0.45, 0.25, 0.45, 1.0)
    m = C["mouth"]
    lips = (0.8, 0.25, 0.3) if rec.presentation == "woman" else (0.36, 0.14, 0.12)
    inside, teeth, tongue = (0.42, 0.06, 0.1), (0.98, 0.98, 0.95), (0.9, 0.42, 0.46)
    expr = rec.expression
    if rec.mouth == "closed":
        if expr == "shocked":
            f.paint(ellipse(f, 0.0, 0.6, 0.1, 0.07), lips, m)
            f.paint(ellipse(f, 0.0, 0.6, 0.06, 0.035), inside, m)
            return
        pts = {"neutral": [(-0.2, 0.6), (0.2, 0.6)],
               "smiling": arc_points(0.0, 0.5, 0.26, 0.13, 20, 160),
               "laughing": arc_points(0.0, 0.46, 0.33, 0.18, 15, 165),
               "angry": arc_points(0.0, 0.7, 0.22, 0.09, 200, 340),
               "crying": arc_points(0.0, 0.72, 0.25, 0.13, 200, 340)}[expr]
        f.paint(polyline(f, pts, 0.085), lips, m)
        return

    def shape(g):  # the open mouth grown by g (for the lip outline)
        if expr == "neutral":
            return ellipse(f, 0.0, 0.6, 0.17 + g, 0.09 + g)
        if expr == "smiling":
            return ellipse(f, 0.0, 0.52, 0.27 + g, 0.2 + g) & (f.v >= 0.52 - g)
        if expr == "laughing":
            return ellipse(f, 0.0, 0.48, 0.33 + g, 0.3 + g) & (f.v >= 0.48 - g)
        if expr == "angry":
            return superellipse(f, 0.0, 0.63, 0.25 + g, 0.11 + g, 4.0)
        if expr == "shocked":
            return ellipse(f, 0.0, 0.64, 0.13 + g, 0.2 + g)
        return ellipse(f, 0.0, 0.74, 0.25 + g, 0.18 + g) & (f.v <= 0.74 + g)  # crying

    f.paint(shape(0.04), lips, m)
    hole = shape(0.0)
    f.paint(hole, inside, m)
    if expr in ("smiling", "laughing"):
        f.paint(hole & (f.v < (0.59 if expr == "smiling" else 0.57)), teeth, m)
    if expr == "laughing":
        f.paint(hole & ellipse(f, 0.0, 0.76, 0.16, 0.09), tongue, m)
    if expr == "angry":
        f.paint(hole & superellipse(f, 0.0, 0.63, 0.2, 0.07, 4.0), teeth, m)
        f.paint(hole & rect(f, -0.2, 0.62, 0.2, 0.645), (0.6, 0.6, 0.6), m)


def _tears(h: Frame) -> None:
    col = (0.55, 0.8, 1.0)
    for s in (-1, 1):
        x = s * (EYE_U + 0.02)
        f = h.sub(x - 0.2, 0.0, x + 0.2, 0.6)
        drop = polyline(f, [(x, 0.14), (x, 0.34)], 0.08) | circle(f, x, 0.4, 0.08)
        f.paint(drop, col, C["tears"])


def _beard(h: Frame, rec: ToonRecord) -> None:
    if rec.beard == "none":
        return
    hair = HAIR[rec.hair_colour]
    if rec.beard == "short":
        col = tuple(0.55 * a + 0.45 * b for a, b in zip(SKIN[rec.skin_tone], hair))
        h.paint(face_mask(h, rec.face_shape, 0.02) & (h.v > 0.32), col, C["beard"])
    else:
        rx = FACE[rec.face_shape][0]
        mask = (face_mask(h, rec.face_shape, 0.06) & (h.v > 0.15)) | ellipse(h, 0.0, 0.95, rx * 0.7, 0.4)
        h.paint(mask, hair, C["beard"])
        h.paint(ellipse(h, 0.0, 0.47, 0.27, 0.08), _shade(hair, 0.85), C["beard"])


def _glasses(h: Frame, rec: ToonRecord) -> None:
    if rec.glasses == "none":
        return
    rx = FACE[rec.face_shape][0]
    g = C["glasses"]
    frame_col = (0.3, 0.16, 0.08) if rec.glasses == "round" else (0.08, 0.08, 0.1)
    lens_all = np.zeros(np.broadcast_shapes(h.u.shape, h.v.shape), bool)
    rims = lens_all.copy()
    for s in (-1, 1):
        ex = s * EYE_U
        if rec.glasses == "round":
            outer, lens = circle(h, ex, EYE_V, 0.29), circle(h, ex, EYE_V, 0.23)
        else:
            outer = superellipse(h, ex, EYE_V, 0.31, 0.25, 4.0)
            lens = superellipse(h, ex, EYE_V, 0.25, 0.19, 4.0)
        lens_all |= lens
        rims |= outer & ~lens
    h.paint(lens_all, (0.75, 0.88, 1.0), alpha=0.3, tag="lens")
    bridge = polyline(h, [(-EYE_U + 0.26, EYE_V - 0.05), (EYE_U - 0.26, EYE_V - 0.05)], 0.06)
    temples = (polyline(h, [(-EYE_U - 0.28, EYE_V - 0.03), (-rx, 0.04)], 0.06)
               | polyline(h, [(EYE_U + 0.28, EYE_V - 0.03), (rx, 0.04)], 0.06))
    h.paint(rims | bridge | temples, frame_col, g)


def _headwear(h: Frame, rec: ToonRecord) -> None:
    hw = C["headwear"]
    rx, ry = FACE[rec.face_shape][:2]
    if rec.costume == "santa":
        h.paint(polygon(h, [(-rx - 0.12, -0.6), (-0.6, -1.45), (0.2, -1.85), (0.95, -1.6), (1.3, -1.05),
                            (rx + 0.12, -0.6)]), (0.84, 0.1, 0.12), hw)
        h.paint(superellipse(h, 0.0, -0.62, rx + 0.22, 0.18, 4.0), WHITE, hw)
        h.paint(circle(h, 1.28, -1.0, 0.22), WHITE, hw)
    elif rec.costume == "royal":
        gold = (0.98, 0.78, 0.15)
        h.paint(polygon(h, [(-0.68, -0.6), (0.68, -0.6), (0.68, -1.35), (0.36, -1.05), (0.0, -1.5),
                            (-0.36, -1.05), (-0.68, -1.35)]), gold, hw)
        h.paint(rect(h, -0.68, -0.82, 0.68, -0.6), (0.85, 0.6, 0.08), hw)
        h.paint(circle(h, 0.0, -0.71, 0.09), (0.85, 0.1, 0.2), hw)
        for s in (-1, 1):
            h.paint(circle(h, s * 0.4, -0.71, 0.07), (0.15, 0.35, 0.9), hw)
        for u, v in [(-0.68, -1.35), (0.0, -1.5), (0.68, -1.35)]:
            h.paint(circle(h, u, v, 0.08), WHITE, hw)
    elif rec.costume in ("flower", "sheep"):
        opening = ellipse(h, 0.0, 0.08, rx * 0.9, ry * 0.88)
        if rec.costume == "flower":
            petals = ellipse(h, 0.0, -0.05, rx + 0.35, ry + 0.3)
            for a in range(0, 360, 36):
                t = math.radians(a)
                petals |= ellipse(h, 1.3 * math.cos(t), -0.05 + 1.3 * math.sin(t), 0.42, 0.26, a)
            h.paint(petals & ~opening, (0.98, 0.55, 0.72), hw)
            h.paint(ellipse(h, 0.0, -0.05, rx + 0.3, ry + 0.25) & ~opening, (0.99, 0.85, 0.25), hw)
        else:
            for s in (-1, 1):
                h.paint(ellipse(h, s * (rx + 0.5), -0.35, 0.32, 0.13, s * 25.0), (0.45, 0.42, 0.4), hw)
            for r, col in ((0.3, (0.8, 0.78, 0.74)), (0.25, (0.96, 0.95, 0.9))):
                wool = ellipse(h, 0.0, -0.05, rx + 0.3, ry + 0.25)
                for a in range(0, 360, 30):
                    t = math.radians(a)
                    wool |= circle(h, (rx + 0.3) * math.cos(t), -0.05 + (ry + 0.25) * math.sin(t), r)
                h.paint(wool & ~opening, col, hw)


def _head(cv: Canvas, rec: ToonRecord) -> Frame:
    h = head_frame(cv, rec)
    skin = SKIN[rec.skin_tone]
    rx = FACE[rec.face_shape][0]
    _hair_back(h, rec)
    for s in (-1, 1):
        f = h.sub(s * rx - 0.3, -0.3, s * rx + 0.3, 0.4)
        f.paint(ellipse(f, s * rx, 0.08, 0.17, 0.26), _shade(skin, 0.9), C["ears"])
    h.paint(face_mask(h, rec.face_shape), skin, C["skin"])
    f = h.sub(-0.2, 0.1, 0.2, 0.4)
    f.paint(ellipse(f, 0.0, 0.28, 0.08, 0.065), _shade(skin, 0.8), C["nose"])
    _beard(h, rec)
    _eyes(h, rec)
    _brows(h, rec)
    _mouth(h, rec)
    if rec.expression == "crying":
        _tears(h)
    _hair_front(h, rec)
    _glasses(h, rec)
    _headwear(h, rec)
    return h


def pose_keypoints(rec: ToonRecord) -> dict[str, tuple[float, float]]:
    """OpenPose body keypoints of the figure, in canvas units (person's right = screen left)."""
    cv = Canvas(1, 1)  # frames only, for their transforms
    h, b = head_frame(cv, rec), body_frame(cv, rec)
    ear_u = FACE[rec.face_shape][0] + 0.05
    return {
        "nose": h.to_canvas(0.0, 0.28), "neck": b.to_canvas(0.0, 1.6),
        "right_shoulder": b.to_canvas(-1.35, 1.9), "left_shoulder": b.to_canvas(1.35, 1.9),
        "right_eye": h.to_canvas(-EYE_U, EYE_V), "left_eye": h.to_canvas(EYE_U, EYE_V),
        "right_ear": h.to_canvas(-ear_u, 0.08), "left_ear": h.to_canvas(ear_u, 0.08),
    }


def render(rec: ToonRecord, size: int = 64, supersample: int = 4) -> ToonRender:
    """Render a record at `size` x `size` (64 or 128) with all its maps."""
    if size not in (64, 128, 256):
        raise ValueError(f"size must be 64, 128 or 256, got {size}")
    if supersample < 1:
        raise ValueError("supersample must be >= 1")
    cv = Canvas(size, supersample)
    _background(cv, rec)
    _body(cv, rec)
    _head(cv, rec)
    image = np.clip(downsample_mean(cv.rgb, supersample) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    seg = downsample_majority(cv.label, supersample, len(SEG_CLASSES))
    kps = pose_keypoints(rec)
    scale = size / 64.0
    return ToonRender(
        image=image, seg=seg, pose=draw_pose(kps, size, supersample), scribble=scribble_map(image),
        keypoints={k: (round(x * scale, 3), round(y * scale, 3)) for k, (x, y) in kps.items()},
        fine_label=cv.label, fine_tags=cv.tags, supersample=supersample,
    )


def colourise_seg(seg: np.ndarray) -> np.ndarray:
    """An RGB picture of a segmentation map (SEG_PALETTE colours)."""
    return SEG_PALETTE[seg]

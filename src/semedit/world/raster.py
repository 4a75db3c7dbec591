"""A tiny supersampled rasteriser: flat-coloured shapes painted in order onto a colour and a label
buffer. Geometry is given in units of the 64x64 canvas, so any output size renders the same scene.

Shapes are predicates over coordinate arrays (`u`, `v`) of a `Frame`: a window of the canvas with
its own similarity transform (the head frame is rotated, scaled and moved with the head pose).
"""

from __future__ import annotations

import math

import numpy as np

BASE = 64.0  # geometry units: pixels of the 64x64 canvas


class Canvas:
    def __init__(self, size: int = 64, supersample: int = 4):
        self.size = size
        self.supersample = supersample
        self.n = size * supersample
        self.px = self.n / BASE  # subpixels per geometry unit
        coords = ((np.arange(self.n) + 0.5) / self.px).astype(np.float32)
        self.coords = coords
        self.rgb = np.zeros((self.n, self.n, 3), np.float32)
        self.label = np.zeros((self.n, self.n), np.uint8)
        self.tags: dict[str, np.ndarray] = {}  # coverage of translucent overlays, see Frame.paint

    def frame(self, cx: float = 0.0, cy: float = 0.0, unit: float = 1.0, angle_deg: float = 0.0,
              extent: tuple[float, float, float, float] | None = None) -> "Frame":
        """A frame whose local point (u, v) lies at canvas (cx, cy) + unit * R(angle) (u, v).

        `extent` = (u0, v0, u1, v1) bounds the local area that will be painted (whole canvas if None).
        """
        t = math.radians(angle_deg)
        c, s = math.cos(t), math.sin(t)
        if extent is None:
            rows = cols = slice(0, self.n)
        else:
            u0, v0, u1, v1 = extent
            corners = [(cx + unit * (u * c - v * s), cy + unit * (u * s + v * c))
                       for u in (u0, u1) for v in (v0, v1)]
            xs, ys = zip(*corners)
            cols = self._span(min(xs), max(xs))
            rows = self._span(min(ys), max(ys))
        dx = self.coords[cols][None, :] - cx
        dy = self.coords[rows][:, None] - cy
        u = (dx * c + dy * s) / unit
        v = (-dx * s + dy * c) / unit
        return Frame(self, rows, cols, u, v, (cx, cy, unit, c, s))

    def _span(self, lo: float, hi: float) -> slice:
        a = max(int(math.floor(lo * self.px)) - 1, 0)
        b = min(int(math.ceil(hi * self.px)) + 1, self.n)
        return slice(a, max(a, b))


class Frame:
    def __init__(self, canvas: Canvas, rows: slice, cols: slice, u: np.ndarray, v: np.ndarray, transform):
        self.canvas, self.rows, self.cols, self.u, self.v = canvas, rows, cols, u, v
        self._transform = transform

    def sub(self, u0: float, v0: float, u1: float, v1: float) -> "Frame":
        """The part of this frame that can contain local points in [u0, u1] x [v0, v1] (for speed)."""
        cx, cy, unit, c, s = self._transform
        corners = [(cx + unit * (u * c - v * s), cy + unit * (u * s + v * c))
                   for u in (u0, u1) for v in (v0, v1)]
        xs, ys = zip(*corners)
        cv = self.canvas
        rows = _clip(cv._span(min(ys), max(ys)), self.rows)
        cols = _clip(cv._span(min(xs), max(xs)), self.cols)
        r = slice(rows.start - self.rows.start, rows.stop - self.rows.start)
        k = slice(cols.start - self.cols.start, cols.stop - self.cols.start)
        u = np.broadcast_to(self.u, (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start))
        v = np.broadcast_to(self.v, u.shape)
        return Frame(cv, rows, cols, u[r, k], v[r, k], self._transform)

    def to_canvas(self, u: float, v: float) -> tuple[float, float]:
        cx, cy, unit, c, s = self._transform
        return cx + unit * (u * c - v * s), cy + unit * (u * s + v * c)

    def paint(self, mask: np.ndarray, colour, label: int | None = None, alpha: float = 1.0,
              tag: str | None = None) -> None:
        """Paint `colour` (RGB in 0..1) where `mask`; opaque paint also sets `label`.

        Translucent paint (alpha < 1) keeps the labels underneath; pass `tag` to record where it
        is visible, so edit regions can include it. Opaque paint hides earlier tags.
        """
        mask = np.broadcast_to(mask, (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start))
        if not mask.any():
            return
        cv = self.canvas
        rgb = cv.rgb[self.rows, self.cols]
        col = np.asarray(colour, np.float32)
        if alpha >= 1.0:
            rgb[mask] = col
            if label is not None:
                cv.label[self.rows, self.cols][mask] = label
            for t in cv.tags.values():
                t[self.rows, self.cols][mask] = False
        else:
            rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * col
        if tag is not None:
            t = cv.tags.setdefault(tag, np.zeros((cv.n, cv.n), bool))
            t[self.rows, self.cols] |= mask


def _clip(a: slice, b: slice) -> slice:
    start = min(max(a.start, b.start), b.stop)
    return slice(start, max(start, min(a.stop, b.stop)))


# --- shape predicates over local coordinates -------------------------------------------------

def ellipse(f: Frame, cx, cy, rx, ry, angle_deg: float = 0.0) -> np.ndarray:
    du, dv = f.u - cx, f.v - cy
    if angle_deg:
        t = math.radians(angle_deg)
        du, dv = du * math.cos(t) + dv * math.sin(t), -du * math.sin(t) + dv * math.cos(t)
    return (du / rx) ** 2 + (dv / ry) ** 2 <= 1.0


def circle(f: Frame, cx, cy, r) -> np.ndarray:
    return (f.u - cx) ** 2 + (f.v - cy) ** 2 <= r * r


def superellipse(f: Frame, cx, cy, rx, ry, p: float) -> np.ndarray:
    return np.abs((f.u - cx) / rx) ** p + np.abs((f.v - cy) / ry) ** p <= 1.0


def rect(f: Frame, u0, v0, u1, v1) -> np.ndarray:
    return (f.u >= u0) & (f.u <= u1) & (f.v >= v0) & (f.v <= v1)


def polyline(f: Frame, points, width: float) -> np.ndarray:
    """A stroke of the given width along the points (round caps and joins)."""
    pts = np.asarray(points, np.float32)
    best = None
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        ex, ey = bx - ax, by - ay
        ll = ex * ex + ey * ey
        pu, pv = f.u - ax, f.v - ay
        t = np.clip((pu * ex + pv * ey) / ll, 0.0, 1.0) if ll > 0 else 0.0
        d = (pu - t * ex) ** 2 + (pv - t * ey) ** 2
        best = d if best is None else np.minimum(best, d)
    return best <= (width / 2.0) ** 2


def polygon(f: Frame, points) -> np.ndarray:
    """Even-odd fill of a closed polygon."""
    pts = np.asarray(points, np.float32)
    inside = np.zeros(np.broadcast_shapes(f.u.shape, f.v.shape), bool)
    for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
        if ay == by:
            continue
        crosses = (f.v >= min(ay, by)) & (f.v < max(ay, by))
        x_at = ax + (f.v - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (f.u < x_at)
    return inside


def arc_points(cx, cy, rx, ry, a0_deg, a1_deg, n: int = 10):
    """Points on an elliptic arc; angles in degrees, 0 = +u, 90 = +v (down)."""
    a = np.radians(np.linspace(a0_deg, a1_deg, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


# --- downsampling -------------------------------------------------------------------------------

def downsample_mean(x: np.ndarray, k: int) -> np.ndarray:
    h, w = x.shape[:2]
    return x.reshape(h // k, k, w // k, k, *x.shape[2:]).mean(axis=(1, 3))


def downsample_any(x: np.ndarray, k: int) -> np.ndarray:
    h, w = x.shape[:2]
    return x.reshape(h // k, k, w // k, k).any(axis=(1, 3))


def downsample_majority(labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """The most frequent label of each k x k block (ties go to the lower class id)."""
    h, w = labels.shape
    blocks = labels.reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, k * k)
    counts = np.zeros((h // k, w // k, n_classes), np.int16)
    for c in range(n_classes):
        counts[..., c] = (blocks == c).sum(-1)
    return counts.argmax(-1).astype(np.uint8)

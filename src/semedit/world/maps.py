"""Layout maps: the OpenPose-style keypoint drawing and the scribble (edge) map.

`scribble_map` works on any RGB image, so the edges of a generated image can be compared with
the scribble it was conditioned on (the ControlNet quality check uses exactly this function).
"""

from __future__ import annotations

import numpy as np

from .raster import Canvas, circle, downsample_mean, polyline

# OpenPose COCO-18 keypoint order, colours and limbs (as drawn by the OpenPose ControlNet annotator).
OPENPOSE_KEYPOINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
                      "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
                      "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
OPENPOSE_COLOURS = np.array([
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
    [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
    [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]], np.float32) / 255.0
OPENPOSE_LIMBS = [(2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
                  (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18)]
_LIMB_WIDTH = 1.5  # canvas px
_JOINT_RADIUS = 1.1


def draw_pose(keypoints: dict[str, tuple[float, float]], size: int = 64, supersample: int = 4) -> np.ndarray:
    """Draw keypoints (canvas units) as an OpenPose skeleton on black: limbs at 60%, joints on top."""
    cv = Canvas(size, supersample)
    full = cv.frame()
    for i, (a, b) in enumerate(OPENPOSE_LIMBS[:17]):  # the last two (shoulder-ear) are not drawn by OpenPose
        na, nb = OPENPOSE_KEYPOINTS[a - 1], OPENPOSE_KEYPOINTS[b - 1]
        if na in keypoints and nb in keypoints:
            (xa, ya), (xb, yb) = keypoints[na], keypoints[nb]
            f = cv.frame(extent=(min(xa, xb) - 2, min(ya, yb) - 2, max(xa, xb) + 2, max(ya, yb) + 2))
            f.paint(polyline(f, [(xa, ya), (xb, yb)], _LIMB_WIDTH), OPENPOSE_COLOURS[i] * 0.6)
    for i, name in enumerate(OPENPOSE_KEYPOINTS):
        if name in keypoints:
            x, y = keypoints[name]
            full.paint(circle(full, x, y, _JOINT_RADIUS), OPENPOSE_COLOURS[i])
    return np.clip(downsample_mean(cv.rgb, supersample) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def scribble_map(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Thin edges of an RGB uint8 image as white-on-black uint8 (HxW, 0 or 255).

    Sobel gradient (the largest over the colour channels), non-maximum suppression along the
    gradient direction, then a fixed threshold: a deterministic Canny-like edge map.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    x = image.astype(np.float32) / 255.0
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag_c = np.hypot(gx, gy)
    best = mag_c.argmax(-1)[..., None]
    mag = np.take_along_axis(mag_c, best, -1)[..., 0]
    gx = np.take_along_axis(gx, best, -1)[..., 0]
    gy = np.take_along_axis(gy, best, -1)[..., 0]
    # quantise the gradient direction to 0, 45, 90, 135 degrees and compare with both neighbours
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    q = ((angle + 22.5) // 45).astype(int) % 4
    m = np.pad(mag, 1)
    h, w = mag.shape
    offsets = [(0, 1), (1, 1), (1, 0), (1, -1)]  # (dy, dx) for 0, 45, 90, 135 degrees
    keep = np.zeros_like(mag, bool)
    for k, (dy, dx) in enumerate(offsets):
        n1 = m[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        n2 = m[1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
        keep |= (q == k) & (mag >= n1) & (mag >= n2)
    return np.where(keep & (mag > threshold), 255, 0).astype(np.uint8)


LAYOUT_KINDS = ("pose", "scribble")


def layout_map(r, kind: str) -> np.ndarray:
    """A render's layout map for a ControlNet of `kind`, as uint8 HxWx3: the pose drawing, or the
    scribble repeated over three channels."""
    if kind not in LAYOUT_KINDS:
        raise ValueError(f"layout kind must be one of {', '.join(LAYOUT_KINDS)}, got {kind!r}")
    return r.pose if kind == "pose" else np.repeat(r.scribble[..., None], 3, axis=2)


def resize_square(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """A square uint8 picture at `size` px: nearest for label maps (HxW) or when asked, else bicubic up and
    box-filtered down."""
    from PIL import Image

    if img.shape[0] == size:
        return img
    if nearest or img.ndim == 2:
        resample = Image.NEAREST
    else:
        resample = Image.BICUBIC if size > img.shape[0] else Image.BOX
    return np.asarray(Image.fromarray(img).resize((size, size), resample))

"""Ground-truth edits and diptychs.

Changing attributes of a record and rendering again gives the *true* edited image: identity,
pose and scene stay as they were, only the target changes. The true edit region is derived from
semantics, not from the pixel difference: the sub-pixels that show one of the attribute's
segmentation classes (or its translucent overlays) in either render, reduced with "any" to the
output grid. Every changed pixel lies inside it (a test checks this), so "preservation outside
the region" is well defined for the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attributes import POSE_FIELDS, ToonRecord, sample_record
from .captions import captions, diptych_caption
from .raster import downsample_any
from .render import SEG_CLASSES, ToonRender, render

_HEAD = tuple(c for c in SEG_CLASSES if c not in ("background", "clothes"))
_FIGURE = tuple(c for c in SEG_CLASSES if c != "background")

# attribute -> (segmentation classes it can change, overlay tags it can change)
EDIT_CLASSES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "presentation": (_FIGURE, ("lens",)),
    "skin_tone": (("skin", "ears", "nose", "beard"), ()),
    "face_shape": (_HEAD, ("lens",)),
    "eye_colour": (("eyes",), ()),
    "hair_style": (("hair",), ()),
    "hair_colour": (("hair", "brows", "beard"), ()),
    "beard": (("beard",), ()),
    "expression": (("eyes", "brows", "mouth", "tears"), ()),
    "eyes": (("eyes",), ()),
    "gaze": (("eyes",), ()),
    "mouth": (("mouth",), ()),
    "glasses": (("glasses",), ("lens",)),
    "costume": (("clothes", "headwear"), ()),
    "shirt_colour": (("clothes",), ()),
    "background": (("background",), ()),
    "background_colour": (("background",), ()),
    "scene_seed": (("background",), ()),
    **{p: (_FIGURE, ("lens",)) for p in POSE_FIELDS},
}


def region_of(renders: list[ToonRender], attributes) -> np.ndarray:
    """Boolean HxW mask of the output pixels the given attributes can change, over the renders."""
    classes, tags = set(), set()
    for a in attributes:
        if a not in EDIT_CLASSES:
            raise ValueError(f"unknown attribute {a!r}")
        classes.update(EDIT_CLASSES[a][0])
        tags.update(EDIT_CLASSES[a][1])
    ids = [SEG_CLASSES.index(c) for c in classes]
    fine = np.zeros(renders[0].fine_label.shape, bool)
    for r in renders:
        fine |= np.isin(r.fine_label, ids)
        for t in tags:
            if t in r.fine_tags:
                fine |= r.fine_tags[t]
    return downsample_any(fine, renders[0].supersample)


@dataclass
class GroundTruthEdit:
    source: ToonRecord
    target: ToonRecord
    source_render: ToonRender
    target_render: ToonRender
    region: np.ndarray  # bool HxW: where the edit may change pixels
    changed: tuple[str, ...]  # the attributes that differ

    @property
    def source_captions(self) -> dict[str, str]:
        return captions(self.source)

    @property
    def target_captions(self) -> dict[str, str]:
        return captions(self.target)


def ground_truth_edit(source: ToonRecord, size: int = 64, **changes) -> GroundTruthEdit:
    """Apply `changes` to `source`, render both, and return them with the true edit region."""
    if not changes:
        raise ValueError("no attribute to change: pass e.g. expression='laughing'")
    target = source.replace(**changes)
    changed = tuple(k for k in changes if getattr(source, k) != getattr(target, k))
    if not changed:
        raise ValueError(f"the changes {changes} leave the record as it is")
    a, b = render(source, size), render(target, size)
    return GroundTruthEdit(source, target, a, b, region_of([a, b], changed), changed)


@dataclass
class Diptych:
    """One identity twice, side by side (the MCDM paper's pair canvas, 64 x 128)."""
    left: ToonRecord
    right: ToonRecord
    image: np.ndarray
    seg: np.ndarray
    pose: np.ndarray
    caption: str  # "the same woman on the left and right"
    left_caption: str  # "a woman, normal costume"
    right_caption: str  # "a woman, santa claus costume"


def diptych(left: ToonRecord, right: ToonRecord, size: int = 64, template: str = "costume") -> Diptych:
    """Render two records of one identity side by side. `template` picks the per-half captions
    ("costume" or "expression", as in the MCDM paper, or "full")."""
    if left.identity() != right.identity():
        diff = [k for k, v in left.identity().items() if right.identity()[k] != v]
        raise ValueError(f"a diptych shows one identity; the records differ in {', '.join(diff)}")
    if template not in ("costume", "expression", "full"):
        raise ValueError(f"template must be costume, expression or full, got {template!r}")
    a, b = render(left, size), render(right, size)
    return Diptych(
        left, right,
        image=np.concatenate([a.image, b.image], 1), seg=np.concatenate([a.seg, b.seg], 1),
        pose=np.concatenate([a.pose, b.pose], 1), caption=diptych_caption(left.presentation),
        left_caption=captions(left)[template], right_caption=captions(right)[template],
    )


# The MCDM paper's editing directions: from a source domain to one of four targets (§4 "Datasets").
PAIR_DIRECTIONS = {
    "costume": ("normal", ("flower", "sheep", "santa", "royal")),
    "expression": ("neutral", ("angry", "shocked", "laughing", "crying")),
}


def sample_pair(seed, kind: str | None = None) -> tuple[ToonRecord, ToonRecord, str]:
    """A (source, target, kind) pair of one identity and pose for a paired edit direction:
    the source in the MCDM source domain (normal costume / neutral expression), the target in one
    of its four target domains."""
    rng = np.random.default_rng(seed)
    rec = sample_record(rng)
    kind = kind or ("costume", "expression")[int(rng.integers(2))]
    if kind not in PAIR_DIRECTIONS:
        raise ValueError(f"kind must be one of {', '.join(PAIR_DIRECTIONS)}, got {kind!r}")
    source_value, targets = PAIR_DIRECTIONS[kind]
    source = rec.replace(**{kind: source_value})
    target = source.replace(**{kind: targets[int(rng.integers(len(targets)))]})
    return source, target, kind

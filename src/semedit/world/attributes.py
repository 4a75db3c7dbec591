"""The attribute record of a toon portrait: what every render, caption and edit is derived from.

A `ToonRecord` is a frozen dataclass of plain values, so it is hashable, JSON-serialisable and
editable with `record.replace(field=value)` (validated). `sample_record(seed)` draws one with the
frequencies below; everything is deterministic from the seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np

# Categorical attributes and their values, in a fixed order (the evaluator's class order later).
CATEGORICAL: dict[str, tuple[str, ...]] = {
    # identity
    "presentation": ("woman", "man"),
    "skin_tone": ("light", "fair", "tan", "brown", "dark"),
    "face_shape": ("round", "oval", "square", "heart"),
    "eye_colour": ("brown", "blue", "green", "grey"),
    "hair_style": ("bald", "short", "long", "bob", "curly", "bun"),
    "hair_colour": ("black", "brown", "blonde", "red", "grey", "blue"),
    "beard": ("none", "short", "full"),
    # expression and face parts
    "expression": ("neutral", "smiling", "laughing", "angry", "shocked", "crying"),
    "eyes": ("open", "closed"),
    "gaze": ("left", "centre", "right"),
    "mouth": ("closed", "open"),
    # accessories and costume
    "glasses": ("none", "round", "square"),
    "costume": ("normal", "santa", "royal", "flower", "sheep"),
    "shirt_colour": ("red", "blue", "green", "yellow", "white", "purple"),
    # scene
    "background": ("plain", "beach", "forest", "city", "night"),
    "background_colour": ("sky", "peach", "mint", "lavender", "grey", "lemon"),
}

# Continuous head pose, in pixels of the 64x64 canvas (resolution independent) and degrees.
POSE_RANGES: dict[str, tuple[float, float]] = {
    "head_x": (-5.0, 5.0),  # horizontal offset of the head (the body follows)
    "head_y": (-3.0, 3.0),  # vertical offset of the head (the neck stretches)
    "head_scale": (0.9, 1.1),  # scale of the whole figure
    "head_tilt": (-12.0, 12.0),  # roll of the head in degrees, positive = clockwise on screen
}

IDENTITY_FIELDS = ("presentation", "skin_tone", "face_shape", "eye_colour", "hair_style",
                   "hair_colour", "beard")
POSE_FIELDS = tuple(POSE_RANGES)

# Sampling frequencies (values not listed share the rest equally).
_FREQ: dict[str, dict[str, float]] = {
    "hair_style:woman": {"bald": 0.04, "short": 0.16, "long": 0.3, "bob": 0.2, "curly": 0.15, "bun": 0.15},
    "hair_style:man": {"bald": 0.15, "short": 0.45, "long": 0.08, "bob": 0.05, "curly": 0.17, "bun": 0.1},
    "beard:man": {"none": 0.55, "short": 0.25, "full": 0.2},
    "eyes": {"open": 0.85, "closed": 0.15},
    "gaze": {"left": 0.25, "centre": 0.5, "right": 0.25},
    "glasses": {"none": 0.6, "round": 0.2, "square": 0.2},
    "costume": {"normal": 0.6, "santa": 0.1, "royal": 0.1, "flower": 0.1, "sheep": 0.1},
}
# P(mouth open | expression): laughing and shocked faces mostly open their mouths.
_MOUTH_OPEN = {"neutral": 0.2, "smiling": 0.4, "laughing": 0.8, "angry": 0.4, "shocked": 0.8, "crying": 0.5}


@dataclass(frozen=True)
class ToonRecord:
    presentation: str = "woman"
    skin_tone: str = "fair"
    face_shape: str = "oval"
    eye_colour: str = "brown"
    hair_style: str = "long"
    hair_colour: str = "brown"
    beard: str = "none"
    expression: str = "neutral"
    eyes: str = "open"
    gaze: str = "centre"
    mouth: str = "closed"
    glasses: str = "none"
    costume: str = "normal"
    shirt_colour: str = "blue"
    background: str = "plain"
    background_colour: str = "sky"
    scene_seed: int = 0  # places the trees, buildings, stars of a scene
    head_x: float = 0.0
    head_y: float = 0.0
    head_scale: float = 1.0
    head_tilt: float = 0.0

    def __post_init__(self):
        for name, values in CATEGORICAL.items():
            value = getattr(self, name)
            if value not in values:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(values)}")
        for name, (lo, hi) in POSE_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
                raise ValueError(f"{name}={value!r} is outside [{lo}, {hi}]")
        if not isinstance(self.scene_seed, int) or self.scene_seed < 0:
            raise ValueError(f"scene_seed={self.scene_seed!r} must be a non-negative integer")
        if self.presentation == "woman" and self.beard != "none":
            raise ValueError("beard must be 'none' when presentation='woman'")

    def replace(self, **changes) -> "ToonRecord":
        """A copy with some fields changed (validated); unknown field names are an error."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown attribute(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ToonRecord":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown attribute(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def identity(self) -> dict:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}


def _choice(rng: np.random.Generator, values: tuple[str, ...], freq: dict[str, float] | None = None) -> str:
    if freq is None:
        return values[int(rng.integers(len(values)))]
    listed = sum(freq.values())
    rest = [v for v in values if v not in freq]
    p = np.array([freq.get(v, (1.0 - listed) / max(len(rest), 1)) for v in values], dtype=float)
    return values[int(rng.choice(len(values), p=p / p.sum()))]


def sample_record(seed: int | np.random.Generator | np.random.SeedSequence) -> ToonRecord:
    """Draw one record; the same seed always gives the same record."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    c = CATEGORICAL
    presentation = _choice(rng, c["presentation"])
    expression = _choice(rng, c["expression"])
    rec = dict(
        presentation=presentation,
        skin_tone=_choice(rng, c["skin_tone"]),
        face_shape=_choice(rng, c["face_shape"]),
        eye_colour=_choice(rng, c["eye_colour"]),
        hair_style=_choice(rng, c["hair_style"], _FREQ[f"hair_style:{presentation}"]),
        hair_colour=_choice(rng, c["hair_colour"], {"blue": 0.06, "grey": 0.1}),
        beard=_choice(rng, c["beard"], _FREQ["beard:man"]) if presentation == "man" else "none",
        expression=expression,
        eyes=_choice(rng, c["eyes"], _FREQ["eyes"]),
        gaze=_choice(rng, c["gaze"], _FREQ["gaze"]),
        mouth="open" if rng.random() < _MOUTH_OPEN[expression] else "closed",
        glasses=_choice(rng, c["glasses"], _FREQ["glasses"]),
        costume=_choice(rng, c["costume"], _FREQ["costume"]),
        shirt_colour=_choice(rng, c["shirt_colour"]),
        background=_choice(rng, c["background"]),
        background_colour=_choice(rng, c["background_colour"]),
        scene_seed=int(rng.integers(2**31)),
    )
    for name, (lo, hi) in POSE_RANGES.items():
        rec[name] = round(float(rng.uniform(lo, hi)), 2)
    return ToonRecord(**rec)


def with_other_value(rec: ToonRecord, attr: str, rng: np.random.Generator) -> ToonRecord | None:
    """A copy of `rec` with the categorical `attr` set to another value drawn by `rng`; None where the
    world does not allow the combination (a beard on a woman)."""
    others = [v for v in CATEGORICAL[attr] if v != getattr(rec, attr)]
    return with_value(rec, attr, others[int(rng.integers(len(others)))])


def with_value(rec: ToonRecord, attr: str, value) -> ToonRecord | None:
    """A copy of `rec` with `attr` set to `value`; None where the world does not allow it."""
    try:
        return rec.replace(**{attr: value})
    except ValueError:
        return None


def record_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of sample `index` of a dataset with base `seed` (independent of other samples)."""
    return np.random.SeedSequence([int(seed), int(index)])


def observable(rec: ToonRecord) -> dict[str, bool]:
    """Which categorical attributes the image shows (an evaluator can only be judged on these):
    gaze and eye colour hide behind closed eyes, hair under a flower or sheep hood, the shirt
    colour under a costume, the background colour behind a scene."""
    hooded = rec.costume in ("flower", "sheep")
    out = {name: True for name in CATEGORICAL}
    out["gaze"] = out["eye_colour"] = rec.eyes == "open"
    out["hair_style"] = not hooded
    out["hair_colour"] = not hooded and rec.hair_style != "bald"
    out["shirt_colour"] = rec.costume == "normal"
    out["background_colour"] = rec.background == "plain"
    return out


def identity_agreement(read: dict, rec: ToonRecord) -> float:
    """The share of `rec`'s observable identity attributes that `read` (an evaluator's reading of an image)
    agrees with."""
    shown = [k for k in IDENTITY_FIELDS if observable(rec)[k]]
    return float(sum(read[k] == getattr(rec, k) for k in shown) / len(shown))

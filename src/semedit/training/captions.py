"""Captions the text-conditioned recipes train on: full and partial descriptions of a record."""

from __future__ import annotations

import numpy as np

from ..world import CAPTION_FIELDS, describe


def training_fields(rng: np.random.Generator) -> tuple[str, ...]:
    """Half all caption fields, half presentation and a random 1-4 others (so short prompts and
    zero-shot templates are in distribution)."""
    if rng.random() < 0.5:
        return CAPTION_FIELDS
    k = int(rng.integers(1, 5))
    return ("presentation", *rng.choice(CAPTION_FIELDS[1:], k, replace=False))


def training_caption(rec, rng: np.random.Generator) -> str:
    """A caption of `rec` over `training_fields`."""
    return describe(rec, training_fields(rng))

"""Editing methods and baselines, each a thin composition of engine parts (see REGISTRY)."""

from . import sdedit  # noqa: F401  (registers)
from .base import REGISTRY, EditRequest, EditResult

__all__ = ["REGISTRY", "EditRequest", "EditResult"]

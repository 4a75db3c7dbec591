"""Editing methods and baselines, each a thin composition of engine parts (see REGISTRY)."""

from . import controlnet, deltaedit, diffedit, imagic, ito, layered, mcdm, pixelguide, sdedit  # noqa: F401  (importing registers them)
from .base import REGISTRY, EditRequest, EditResult, config_for, make_config, run_edit

__all__ = ["REGISTRY", "EditRequest", "EditResult", "config_for", "make_config", "run_edit"]

"""Backbones loaded once per process and shared by every edit that names the same model."""

from __future__ import annotations

import threading

from ..models.backbone import TOON64, Backbone, BackboneNotFound, load_backbone
from ..models.fast import fast_backbone

_CACHE: dict[tuple, Backbone] = {}
_LOCK = threading.RLock()


def get_backbone(model: str = TOON64, controlnets: dict[str, str] | None = None, fast: bool = False) -> Backbone:
    """`load_backbone(model, controlnets)`, cached by its arguments; a model that is missing is an
    `InputError` that says how to get it. `fast`: its U-Net and ControlNets compiled, in bfloat16
    where native (`models.fast.fast_backbone`; each new call shape compiles once per process, for long-lived
    processes)."""
    from .inputs import InputError

    key = (model, tuple(sorted((controlnets or {}).items())), bool(fast))
    with _LOCK:
        if key not in _CACHE:
            if fast:  # shares the default backbone's weights
                _CACHE[key] = fast_backbone(get_backbone(model, controlnets))
            else:
                try:
                    _CACHE[key] = load_backbone(model, controlnets=controlnets or None)
                except (BackboneNotFound, ValueError) as e:
                    raise InputError(str(e)) from None
        return _CACHE[key]


def clear_backbones() -> None:
    with _LOCK:
        _CACHE.clear()

"""Running a method for an interface: a progress report per U-Net call and cancellation between calls."""

from __future__ import annotations

import threading
from typing import Callable

from ..engine.counting import NetworkCalls
from ..methods import EditRequest, EditResult, config_for, run_edit
from ..models.backbone import TOON64
from .backbones import get_backbone
from .inputs import PreparedEdit


class EditCancelled(RuntimeError):
    """The user stopped the edit; nothing was written."""


def run_with_progress(method: str, backbone, request: EditRequest, config=None, seed: int = 0,
               progress: Callable[[NetworkCalls], None] | None = None,
               cancel: threading.Event | None = None) -> EditResult:
    """`run_edit` with `progress(calls so far)` before every U-Net call and a stop, raising
    `EditCancelled`, at the first U-Net call after `cancel` is set."""
    def before_unet(calls: NetworkCalls) -> None:
        if progress is not None:
            progress(calls)
        if cancel is not None and cancel.is_set():
            raise EditCancelled(f"{method} was cancelled after {calls.unet_evaluations} U-Net evaluations")

    return run_edit(method, backbone, request, config, seed, before_unet=before_unet)


def run_prepared_edit(prepared: PreparedEdit, method: str, settings: dict | None = None, model: str = TOON64,
                      controlnets: dict | None = None, seed: int = 0,
                      progress: Callable[[NetworkCalls], None] | None = None,
                      cancel: threading.Event | None = None, fast: bool = False) -> EditResult:
    """A checked edit (`prepare_edit`) run on the (cached) backbone `model`, with the method's `settings` over
    its defaults on that model (`config_for`); the provenance gains the prompts, the input and the attribute
    changes."""
    backbone = get_backbone(model, controlnets, fast)
    config = config_for(method, backbone, **(settings or {}))
    result = run_with_progress(method, backbone, prepared.request(backbone, method), config, seed, progress, cancel)
    result.provenance.update(prepared.provenance())
    return result

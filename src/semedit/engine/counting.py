"""One counter of network calls: forward hooks on the U-Net and the ControlNets of a backbone, so that
no sampler, guidance wrapper or method has to thread counts through its return values. Methods name
their stages with `phase`, so that progress reports can say where an edit is."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

_PHASE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("semedit_phase", default=None)
_UNET_HOOKS: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("semedit_unet_hooks", default=None)


@dataclass
class NetworkCalls:
    unet_evaluations: int = 0  # batch entries through the U-Net (a batch of 4 is 4 evaluations)
    unet_calls: int = 0  # U-Net forward calls
    controlnet_calls: int = 0  # ControlNet forward calls, all ControlNets together
    phase: str | None = None  # the method's stage of the next U-Net call
    phase_calls: int = 0  # U-Net calls made in that stage so far
    phase_steps: int | None = None  # U-Net calls the stage makes in all


@contextmanager
def phase(name: str, steps: int):
    """Within the context, U-Net calls belong to the stage `name` of a method, which makes `steps` of
    them (for progress reports; nothing is computed differently)."""
    token = _PHASE.set((name, int(steps)))
    try:
        yield
    finally:
        _PHASE.reset(token)


def _batch(args, kwargs) -> int:
    x = args[0] if args else kwargs["sample"]
    return int(x.shape[0])


@contextmanager
def count_network_calls(backbone, before_unet: Callable[[NetworkCalls], None] | None = None):
    """Within the context, the yielded `NetworkCalls` counts every U-Net and ControlNet forward pass of
    `backbone`. `before_unet(calls)` runs before each U-Net call with the counts so far and the stage it
    belongs to: a progress report, or a place to stop a run by raising."""
    calls = NetworkCalls()

    def unet_pre(module, args, kwargs):
        stage = _PHASE.get()
        name, steps = stage if stage is not None else (None, None)
        if name != calls.phase:
            calls.phase, calls.phase_calls = name, 0
        calls.phase_steps = steps
        if before_unet is not None:
            before_unet(calls)

    def unet_post(module, args, kwargs, output):  # returns None: a value would replace the output
        calls.unet_evaluations += _batch(args, kwargs)
        calls.unet_calls += 1
        calls.phase_calls += 1

    def controlnet_post(module, args, kwargs, output):
        calls.controlnet_calls += 1

    hooks = [backbone.unet.register_forward_pre_hook(unet_pre, with_kwargs=True),
             backbone.unet.register_forward_hook(unet_post, with_kwargs=True)]
    hooks += [net.register_forward_hook(controlnet_post, with_kwargs=True) for net in backbone.controlnets.values()]
    token = _UNET_HOOKS.set((unet_pre, unet_post))
    try:
        yield calls
    finally:
        _UNET_HOOKS.reset(token)
        for h in hooks:
            h.remove()


@contextmanager
def counting_as_unet(module):
    """Within the context, calls of `module` (a method's own trained U-Net, kept across edits) count, and report
    progress, as the backbone U-Net's under the active counter."""
    hooks = _UNET_HOOKS.get()
    handles = [] if hooks is None else [module.register_forward_pre_hook(hooks[0], with_kwargs=True),
                                        module.register_forward_hook(hooks[1], with_kwargs=True)]
    try:
        yield module
    finally:
        for h in handles:
            h.remove()


def counted_as_unet(module):
    """`module`, a stand-in for the backbone's U-Net made during an edit (a fine-tuned copy), with the active
    counter's U-Net hooks, so its calls count (and report progress) as the U-Net's. Returns the module."""
    hooks = _UNET_HOOKS.get()
    if hooks is not None:
        module.register_forward_pre_hook(hooks[0], with_kwargs=True)
        module.register_forward_hook(hooks[1], with_kwargs=True)
    return module

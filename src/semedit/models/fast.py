"""Faster inference calls of a backbone's denoising networks: the U-Net and ControlNets run in bfloat16
and/or through `torch.compile` (inductor, weights frozen into the graph), behind the eager module's own
call, so samplers, guidance wrappers and the call counter see no difference.

Only calls without autograd take the fast path; a call that needs gradients (classifier guidance
through the U-Net) or that has hooks on the network's inner blocks (feature reading) runs the eager
module, whose weights are the backbone's own. bfloat16 changes the outputs within a stated tolerance
(docs/benchmark.md, "Speed"); the default backbone is never changed by this module.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _cast(value, dtype):
    """Floating tensors in (nested lists, tuples, dicts and diffusers outputs of) `value` cast to `dtype`."""
    if torch.is_tensor(value):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # diffusers' BaseOutput (also a dict)
        return type(value)(**{f.name: _cast(getattr(value, f.name), dtype) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


class FastNetwork(torch.nn.Module):
    """`eager` (kept, and used whenever gradients or inner hooks are involved) beside a copy of it in
    `precision`, compiled if asked. Attributes the wrapper lacks (config, dtype, blocks) are the eager
    module's; inputs and outputs keep the eager module's dtype."""

    def __init__(self, eager: torch.nn.Module, precision: str = "bf16", compile: bool = False):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.eager = eager
        fast = eager if PRECISIONS[precision] == eager.dtype else copy.deepcopy(eager).to(PRECISIONS[precision])
        self.fast_dtype = PRECISIONS[precision]
        self.fast = torch.compile(fast, dynamic=False) if compile else fast  # static shapes run fastest here
        self.compile_seconds = 0.0  # time spent in calls that compiled a new graph

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["eager"], name)

    def _inner_hooks(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.eager.modules())

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled() or self._inner_hooks():
            return self.eager(*args, **kwargs)
        t0, frames = time.perf_counter(), _compiled_frames()
        out = self.fast(*_cast(args, self.fast_dtype), **_cast(kwargs, self.fast_dtype))
        if _compiled_frames() != frames:
            self.compile_seconds += time.perf_counter() - t0
        return _cast(out, self.eager.dtype)


def _compiled_frames() -> int:
    dynamo = sys.modules.get("torch._dynamo.utils")
    return 0 if dynamo is None else int(dynamo.counters["stats"]["unique_graphs"])


def accelerated(backbone, precision: str = "bf16", compile: bool = False):
    """A copy of `backbone` whose U-Net and ControlNets take the fast path (see the module notes); the
    VAE, text encoder and CLIP are shared with `backbone` unchanged. `compile` uses inductor with frozen
    weights (`torch._inductor.config.freezing`): each call signature and batch size compiles once per process
    (up to a minute each on a 2-core CPU), for processes that run many edits."""
    if compile:
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights as constants: prepacked convolutions on the CPU
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)  # methods' signatures x batch sizes
    return dataclasses.replace(
        backbone, networks=f"{precision}{', compiled' if compile else ''}",
        unet=FastNetwork(backbone.unet, precision, compile),
        controlnets={k: FastNetwork(v, precision, compile) for k, v in backbone.controlnets.items()})


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (CUDA with bf16, a CPU with AVX-512 BF16 or AMX); elsewhere
    bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def fast_backbone(backbone):
    """What `fast` / `--fast` means everywhere: compiled, in bfloat16 where the device computes it natively and in
    float32 elsewhere (the fastest measured on each kind of CPU, docs/benchmark.md)."""
    return accelerated(backbone, "bf16" if native_bf16(backbone.device) else "fp32", compile=True)

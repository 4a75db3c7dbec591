"""What every method takes and returns, and the registry that maps names to methods."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..engine.conditioning import Condition, EditConditions, control_map, encode_text
from ..engine.counting import count_network_calls


@dataclass
class EditRequest:
    """An edit: the input image (uint8 HxWx3) and what to change.

    `mask` (HxW, nonzero = may change) is optional for methods that estimate their own;
    `controls` / `source_controls` map ControlNet names to target / original layout maps
    (uint8 HxWx3 drawings or HxW scribbles); `edited_seg` is an edited segmentation map (HxW class ids)
    and `source_seg` the input's own, if known. Methods that edit in layers (LayerDiffusion) also take the
    target's subject and background parts (`object_prompt`, `background_prompt`) and a picture whose
    background to take (`reference_image`).
    """
    image: np.ndarray
    target_prompt: str
    source_prompt: str = ""
    mask: np.ndarray | None = None
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    source_controls: dict[str, np.ndarray] = field(default_factory=dict)
    edited_seg: np.ndarray | None = None
    source_seg: np.ndarray | None = None
    object_prompt: str = ""
    background_prompt: str = ""
    reference_image: np.ndarray | None = None

    def validate(self, size: int, controlnets=()) -> None:
        """Clear errors for bad input, before any model runs."""
        img = np.asarray(self.image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be uint8 HxWx3, got {img.dtype} {img.shape}")
        if img.shape[:2] != (size, size):
            raise ValueError(f"image is {img.shape[1]}x{img.shape[0]}; the model needs {size}x{size}")
        if not isinstance(self.target_prompt, str) or not isinstance(self.source_prompt, str):
            raise ValueError("prompts must be strings")
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != (size, size):
                raise ValueError(f"mask is {m.shape}; it must be {size}x{size} like the image")
            if not (m > 0).any():
                raise ValueError("mask is empty: nothing may change")
        for kind, maps in (("controls", self.controls), ("source_controls", self.source_controls)):
            for name, m in maps.items():
                if name not in controlnets:
                    raise ValueError(f"unknown condition type {name!r} in {kind}; this model has: "
                                     f"{', '.join(controlnets) or 'no ControlNets'}")
                if np.asarray(m).shape[:2] != (size, size):
                    raise ValueError(f"{kind}[{name!r}] is {np.asarray(m).shape}; it must be {size}x{size}")
        if self.reference_image is not None:
            ref = np.asarray(self.reference_image)
            if ref.dtype != np.uint8 or ref.shape != (size, size, 3):
                raise ValueError(f"the reference image must be uint8 {size}x{size}x3 like the image, got {ref.dtype} "
                                 f"{ref.shape}")
        if not isinstance(self.object_prompt, str) or not isinstance(self.background_prompt, str):
            raise ValueError("prompts must be strings")
        for what, seg in (("the edited map", self.edited_seg), ("the input's map", self.source_seg)):
            if seg is not None and np.asarray(seg).shape != (size, size):
                raise ValueError(f"{what} is {np.asarray(seg).shape}; it must be {size}x{size} like the image")
        if self.source_seg is not None and self.edited_seg is None:
            raise ValueError("the input's map is given without an edited map: give the edited map too")
        if self.edited_seg is not None:  # a map edit: the map says what changes
            return
        missing = [n for n in self.controls if n not in self.source_controls]
        if missing:
            raise ValueError(f"target layout map(s) {', '.join(missing)} given without the input's own map "
                             f"(source_controls[{missing[0]!r}]): the edit inverts under (and contrasts with) "
                             "the original condition, so it needs the original layout too")
        if not self.target_prompt.strip() and not self.controls:
            raise ValueError("the target prompt is empty: say what the edited image shows")
        changed = [n for n in self.controls if not np.array_equal(self.controls[n], self.source_controls[n])]
        if self.target_prompt == self.source_prompt and not changed:
            raise ValueError("nothing to edit: the target prompt is the source prompt and no target layout map "
                             "differs from the input's; give a new prompt, pose or scribble")


def edit_conditions(backbone, request: EditRequest, negative_prompt: str = "",
                    controlnet_scale: float = 1.0) -> EditConditions:
    """C_0 and C_EDIT from a request: text (source / target prompt) and layouts (source_controls /
    controls), any combination (§3.2, supp. A.4.1). A layout map given only in source_controls is
    held fixed (in both conditions). The request is `validate`d."""
    src_maps = {n: control_map(backbone, m) for n, m in request.source_controls.items()}
    edit_maps = {**src_maps, **{n: control_map(backbone, m) for n, m in request.controls.items()}}
    changed = [n for n in request.controls if not torch.equal(edit_maps[n], src_maps[n])]
    null, source, target = encode_text(backbone, [negative_prompt, request.source_prompt,
                                                  request.target_prompt]).chunk(3)
    s = controlnet_scale
    src_controls = {n: (m, s) for n, m in src_maps.items()}
    edit_controls = {n: (m, s) for n, m in edit_maps.items()}
    edit_null = Condition(null, edit_controls) if changed else None  # layouts agree: one null branch
    return EditConditions(Condition(source, src_controls), Condition(target, edit_controls),
                          Condition(null, src_controls), edit_null)


def setting(default, help: str, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False,
            choices: tuple | None = None):
    """A method config field: its default (the paper's), its help text with the paper's section, and the
    values it may take (a range from `lo` to `hi`, each end closed unless `*_open`, or `choices`), which
    `MethodConfig` checks and the command line and the app show."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
                                            "choices": choices})


def range_text(meta) -> str:
    """A field's range in interval notation, e.g. (0, 1] or [1, inf)."""
    lo, hi = meta.get("lo"), meta.get("hi")
    return (f"{'(' if meta.get('lo_open') or lo is None else '['}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{')' if meta.get('hi_open') or hi is None else ']'}")


@dataclass
class MethodConfig:
    """Base of every method's config: each field declared with `setting` is checked against its range or
    choices (and floats are finite) before any model runs. Subclasses add checks across fields in
    `check`."""

    def __post_init__(self):
        import math

        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or isinstance(value, bool):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value}")
            if meta.get("choices") and value not in meta["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
            lo, hi = meta.get("lo"), meta.get("hi")
            below = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
            above = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
            if below or above:
                raise ValueError(f"{f.name} must be in {range_text(meta)}, got {value}")
        self.check()

    def check(self) -> None:
        """Checks across fields (none by default)."""

    def require_steps(self, **ratios: float | None) -> None:
        """Each of `ratios` (a share of the `steps` schedule) must run at least one denoising step."""
        from ..engine.ddim import steps_for

        for name, ratio in ratios.items():
            if ratio is not None and int(self.steps * ratio) < 1:
                raise ValueError(f"steps={self.steps} with {name}={ratio} runs no denoising step; give at least "
                                 f"{steps_for(ratio)} steps")


@dataclass
class EditResult:
    image: np.ndarray  # uint8 HxWx3
    mask: np.ndarray | None  # float HxW in [0, 1]: where the method allowed change
    intermediates: dict[str, object]  # named pictures and tensors (inverted latents, guidance image, ...)
    provenance: dict  # method, config, seed, model; `run_edit` adds seconds and network calls
    unet_evaluations: int = 0  # set by `run_edit`


@dataclass
class Method:
    name: str
    edit: Callable  # edit(backbone, request, config, seed) -> EditResult
    config: type
    layout: bool = False  # takes layout conditions (ControlNet maps) besides text
    mask: bool = False  # takes a user mask of the region that may change
    segmentation: bool = False  # takes an edited segmentation map (and no prompt)
    layers: bool = False  # takes the target's subject and background prompts and a reference background
    source: bool = True  # reads the source prompt (the input's description)


REGISTRY: dict[str, Method] = {}


def register(name: str, config: type, layout: bool = False, mask: bool = False, segmentation: bool = False,
             layers: bool = False, source: bool = True):
    def deco(fn):
        REGISTRY[name] = Method(name, fn, config, layout, mask, segmentation, layers, source)
        return fn
    return deco


def trained_part_folder(backbone, given: str | None, folder_name: str, what: str, setting_name: str):
    """The folder of a method's trained part: the one the config names, else the model family's `folder_name`."""
    from pathlib import Path

    if given is not None:
        return Path(given)
    if backbone.root is None:
        raise ValueError(f"{backbone.name} has no {what}; give its folder ({setting_name}=...)")
    return backbone.root / folder_name


_TRAINED_PARTS: dict[tuple, object] = {}


def cached_part(folder, version_file: str, device, load):
    """`load(folder, device)`, once per folder, version on disk (the mtime of `folder / version_file`) and device; a
    part that is not there is a ValueError naming what trains it (`load`'s FileNotFoundError)."""
    path = folder / version_file
    key = (str(folder.resolve()), path.stat().st_mtime_ns if path.exists() else None, str(device), load)
    if key not in _TRAINED_PARTS:
        try:
            _TRAINED_PARTS[key] = load(folder, device)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
    return _TRAINED_PARTS[key]


def provenance(method: str, config, seed: int, backbone) -> dict:
    own = backbone.method_defaults.get(method)
    return {"method": method, "config": dataclasses.asdict(config), "seed": seed, "model": backbone.name,
            **({"model_defaults": dict(own)} if own else {}),
            **({} if backbone.networks == "eager" else {"networks": backbone.networks})}


def make_config(method: str, **overrides):
    """The method's config with some fields changed; unknown names and bad values are clear errors."""
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[method].config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"{method} has no setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return cls(**overrides)


def config_for(method: str, backbone, **overrides):
    """The method's config on `backbone`: the paper's defaults, then the model family's own where it has them
    (`Backbone.method_defaults`, from its method_defaults.json), then `overrides`."""
    return make_config(method, **{**backbone.method_defaults.get(method, {}), **overrides})


def plain_type(t):
    """X for a config field annotated X | None, else the annotation itself."""
    import typing

    args = typing.get_args(t)
    return next(a for a in args if a is not type(None)) if len(args) == 2 and type(None) in args else t


def parse_setting(method: str, name: str, value: str):
    """A config field's value from text, typed by the field (bool: 1/true/yes; X | None: "none" is None)."""
    import typing

    hints = typing.get_type_hints(REGISTRY[method].config)
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(REGISTRY[method].config))
        raise ValueError(f"{method} has no setting {name!r}; known: {known}")
    t, text = plain_type(hints[name]), value.strip()
    if t is not hints[name] and text.lower() == "none":
        return None
    if t is bool:
        return text.lower() in ("1", "true", "yes")
    try:
        return t(text)
    except ValueError:
        raise ValueError(f"{name} needs a {t.__name__}, got {value!r}") from None


def check_request(method: str, backbone, request: EditRequest, config=None) -> None:
    """Everything `run_edit` checks before it runs: the method and its config, what the method takes (a
    mask, layouts) and the request itself. Clear errors, no network runs."""
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(REGISTRY))}")
    if config is not None and not isinstance(config, REGISTRY[method].config):
        raise TypeError(f"{method} takes a {REGISTRY[method].config.__name__}, got {type(config).__name__}")
    if (request.controls or request.source_controls) and not REGISTRY[method].layout:
        raise ValueError(f"{method} edits with text only; it takes no layout conditions "
                         f"({', '.join(request.controls or request.source_controls)})")
    if request.mask is not None and not REGISTRY[method].mask:
        takers = ", ".join(sorted(m for m, entry in REGISTRY.items() if entry.mask))
        raise ValueError(f"{method} takes no mask: it does not restrict the edit to a region ({takers} do)")
    given = [what for what, v in (("object prompt", request.object_prompt), ("background prompt",
             request.background_prompt), ("reference background", request.reference_image is not None)) if v]
    if given and not REGISTRY[method].layers:
        takers = ", ".join(sorted(m for m, entry in REGISTRY.items() if entry.layers))
        raise ValueError(f"{method} does not edit in layers: it takes no {' or '.join(given)} ({takers} do)")
    takes_map = REGISTRY[method].segmentation
    if request.edited_seg is not None and not takes_map:
        takers = ", ".join(sorted(m for m, entry in REGISTRY.items() if entry.segmentation))
        raise ValueError(f"{method} takes no segmentation map: it edits by prompt or layout ({takers} edit by map)")
    if takes_map and request.edited_seg is None:
        raise ValueError(f"{method} edits by segmentation map: give the edited map (--seg, or --set for toon PNGs)")
    request.validate(backbone.image_size, backbone.controlnets)


def run_edit(method: str, backbone, request: EditRequest, config=None, seed: int = 0,
             before_unet: Callable | None = None) -> EditResult:
    """Check the request, then run a registered method (`config` None: `config_for` the backbone), recording
    its wall time and network calls in the provenance. `before_unet(NetworkCalls)` runs before every U-Net call (progress; raising stops
    the edit)."""
    import time

    config = config_for(method, backbone) if config is None else config
    check_request(method, backbone, request, config)
    t0 = time.perf_counter()
    with count_network_calls(backbone, before_unet) as calls:
        result = REGISTRY[method].edit(backbone, request, config, seed)
    latents = result.intermediates.get("latents")
    if isinstance(latents, torch.Tensor) and not torch.isfinite(latents).all():
        raise ValueError(f"{method} diverged: its latents are not finite numbers; lower the guidance scales or the "
                         "learning rate")
    result.unet_evaluations = calls.unet_evaluations
    result.provenance.update(seconds=round(time.perf_counter() - t0, 3), unet_evaluations=calls.unet_evaluations,
                             unet_calls=calls.unet_calls, controlnet_calls=calls.controlnet_calls)
    return result

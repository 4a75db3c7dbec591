"""What a user gives, turned into an `EditRequest`: an image (file or array, toon PNGs carry their record),
prompts, attribute changes, layout maps and a mask. Every check runs before any model loads or any
output is written; a problem is an `InputError` with a message for a person."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..methods import EditRequest
from ..world import CATEGORICAL, LAYOUT_KINDS, POSE_RANGES, ToonRecord, describe, layout_map, render, resize_square

Picture = str | Path | np.ndarray  # a file, or uint8 HxWx3 / HxW


class InputError(ValueError):
    """Bad input from the user: nothing ran, nothing was written."""


def parse_changes(items) -> dict:
    """ATTRIBUTE=VALUE items as {attribute: typed value} (pose values are numbers, scene_seed an integer)."""
    changes = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"{item!r} is not ATTRIBUTE=VALUE")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in POSE_RANGES:
            try:
                changes[key] = float(value)
            except ValueError:
                raise InputError(f"{key} needs a number, got {value!r}") from None
        elif key == "scene_seed":
            if not value.isdigit():
                raise InputError(f"scene_seed needs a non-negative integer, got {value!r}")
            changes[key] = int(value)
        elif key in CATEGORICAL:
            changes[key] = value
        else:
            known = ", ".join([*CATEGORICAL, *POSE_RANGES, "scene_seed"])
            raise InputError(f"unknown attribute {key!r}; known: {known}")
    return changes


def parse_named(items, what: str, must_exist: bool = True) -> dict[str, str]:
    """NAME=VALUE items as {NAME: VALUE} (with `must_exist`, VALUE is a file)."""
    out = {}
    for item in items:
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not name or not value:
            raise InputError(f"{what}: {item!r} is not NAME=VALUE")
        if must_exist and not Path(value).is_file():
            raise InputError(f"{what}: {value} is not a file")
        out[name] = value
    return out


def read_picture(picture: Picture, size: int, what: str, mode: str = "RGB") -> np.ndarray:
    """A picture as a uint8 array of the model's size (RGB: HxWx3; "L": HxW), or an `InputError`."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(picture, np.ndarray):
        a = picture
    else:
        try:
            with Image.open(picture) as img:
                a = np.asarray(img.convert(mode))
        except (OSError, UnidentifiedImageError) as e:
            raise InputError(f"cannot read {what} {picture}: {e}") from None
    if a.shape[:2] != (size, size):
        raise InputError(f"{what} is {a.shape[1]}x{a.shape[0]}; the model needs {size}x{size}")
    return a


def read_record(picture: Picture) -> ToonRecord | None:
    """The record a toon PNG carries (`semedit world render`), or None."""
    from ..world import read_toon_record

    if isinstance(picture, np.ndarray):
        return None
    try:
        return read_toon_record(picture)
    except (OSError, ValueError):
        return None


@dataclass
class EditInputs:
    """An edit as a user states it. The target is a prompt, layout maps, or (toon inputs) attribute
    `changes`, from which the target prompt and, with `layout_from_changes`, the target pose or scribble
    are derived; the source prompt and the input's own layout maps are derived for toon inputs."""
    image: Picture
    target: str | None = None
    source: str | None = None
    changes: dict = field(default_factory=dict)
    layout_from_changes: str | None = None  # "pose" or "scribble"
    mask: Picture | None = None  # may change: white in a greyscale file, nonzero in an array
    controls: dict[str, Picture] = field(default_factory=dict)  # ControlNet name -> target layout map
    source_controls: dict[str, Picture] = field(default_factory=dict)  # ControlNet name -> the input's map
    record: ToonRecord | None = None  # the input's record; read from a toon PNG when None


@dataclass
class PreparedEdit:
    """`EditInputs` checked and completed, before any model is loaded."""
    inputs: EditInputs
    record: ToonRecord | None
    edited: ToonRecord | None  # the record with the changes applied
    source: str
    target: str

    @property
    def layout_kinds(self) -> list[str]:
        kinds = list(self.inputs.controls)
        return kinds + ([self.inputs.layout_from_changes] if self.inputs.layout_from_changes else [])

    def provenance(self) -> dict:
        inputs = self.inputs
        out = {"source_prompt": self.source, "target_prompt": self.target}
        if not isinstance(inputs.image, np.ndarray):
            out["input"] = str(inputs.image)
        if inputs.changes:
            out["changes"] = [f"{k}={v}" for k, v in inputs.changes.items()]
        return out

    def request(self, backbone) -> EditRequest:
        """The EditRequest at the backbone's size; layout kinds it has no ControlNet for are refused."""
        inputs, size = self.inputs, backbone.image_size
        image = read_picture(inputs.image, size, "image")

        def derived_map(rec, kind):
            return resize_square(layout_map(render(rec, 64), kind), size, nearest=True)

        controls, source_controls = {}, {}
        for kind in self.layout_kinds:
            if kind not in backbone.controlnets:
                raise InputError(f"{backbone.name} has no {kind} ControlNet (has: "
                                 f"{', '.join(backbone.controlnets) or 'none'})")
            controls[kind] = (read_picture(inputs.controls[kind], size, f"the {kind} map") if kind in inputs.controls
                              else derived_map(self.edited, kind))
            if kind in inputs.source_controls:
                source_controls[kind] = read_picture(inputs.source_controls[kind], size, f"the input's {kind} map")
            elif self.record is not None and kind in LAYOUT_KINDS:
                source_controls[kind] = derived_map(self.record, kind)
        mask = None
        if inputs.mask is not None:
            mask = read_picture(inputs.mask, size, "the mask", mode="L")
            mask = mask > 0 if isinstance(inputs.mask, np.ndarray) else mask > 127  # a file: white may change
        request = EditRequest(image=image, target_prompt=self.target, source_prompt=self.source, mask=mask,
                              controls=controls, source_controls=source_controls)
        try:
            request.validate(size, tuple(backbone.controlnets))
        except ValueError as e:
            raise InputError(str(e)) from None
        return request


def prepare_edit(inputs: EditInputs) -> PreparedEdit:
    """Check `inputs` and derive what they leave out (prompts, the edited record), with no model loaded."""
    record = inputs.record if inputs.record is not None else read_record(inputs.image)
    source = inputs.source if inputs.source is not None else (describe(record) if record else None)
    if source is None:
        raise InputError("give the source prompt (--source), the input's description; it can only be derived "
                         "for toon PNGs")
    if inputs.layout_from_changes not in (None, *LAYOUT_KINDS):
        raise InputError(f"the layout from changes must be one of {', '.join(LAYOUT_KINDS)}")
    edited = None
    if inputs.changes:
        if record is None:
            raise InputError("attribute changes (--set) need a toon PNG (made by `semedit world render`), which "
                             "carries its record")
        if inputs.target is not None or inputs.controls:
            raise InputError("give the edit either with --set or with --target / --pose / --scribble")
        try:
            edited = record.replace(**inputs.changes)
        except ValueError as e:
            raise InputError(str(e)) from None
    elif inputs.layout_from_changes:
        raise InputError("--layout goes with --set")
    target = inputs.target if inputs.target is not None else (
        describe(edited) if edited is not None else source if inputs.controls else None)
    if target is None:
        raise InputError("say what should change: give --target, --pose, --scribble or (toon PNGs) --set")
    return PreparedEdit(inputs, record, edited, source, target)

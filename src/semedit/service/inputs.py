"""What a user gives, turned into an `EditRequest`: an image (file or array, toon PNGs carry their record),
prompts, attribute changes, layout maps and a mask. Every check runs before any model loads or any
output is written; a problem is an `InputError` with a message for a person."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..methods import REGISTRY, EditRequest
from ..methods.base import check_request
from ..models.backbone import image_size_of
from ..world import (CATEGORICAL, LAYOUT_KINDS, POSE_RANGES, SEG_PALETTE, ToonRecord, describe, layer_captions,
                     layout_map, render, resize_square, scribble_map)

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


def _decoded(img, mode: str, what: str, notes: list[str]) -> np.ndarray:
    """The pixels of an opened picture as uint8 in `mode` ("RGB" or "L"): 16-bit and 32-bit greyscale
    scaled, transparency composited on white, other modes converted; each change noted."""
    from PIL import Image

    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        top = 65535 if img.mode.startswith("I;16") or a.max() > 255 else 255
        if a.min() < 0 or a.max() > top or not np.isfinite(a).all():
            raise InputError(f"{what} has {img.mode} values outside 0..{top}; give an 8- or 16-bit picture")
        if top == 65535:
            notes.append(f"{what}: 16-bit greyscale scaled to 8 bits")
        grey = np.round(a * (255 / top)).astype(np.uint8)
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append(f"{what}: transparent pixels composited on white")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba)
    elif img.mode not in ("RGB", "L", "1", "P"):
        notes.append(f"{what}: converted from {img.mode} to {mode}")
    return np.asarray(img.convert(mode))


def _open_file(picture, size: int, what: str, decode) -> np.ndarray:
    """decode(the opened image) of a picture file whose header says it is size x size, or an `InputError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(picture) as img:
            if img.size != (size, size):
                raise InputError(f"{what} is {img.width}x{img.height}; the model needs {size}x{size}")
            return decode(img)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{what} {picture} has too many pixels to open safely; the model needs "
                         f"{size}x{size}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read {what} {picture}: {e}") from None


def _checked_size(a: np.ndarray, size: int, what: str) -> np.ndarray:
    if a.shape[:2] != (size, size):
        raise InputError(f"{what} is {a.shape[1]}x{a.shape[0]}; the model needs {size}x{size}")
    return a


def read_picture(picture: Picture, size: int, what: str, mode: str = "RGB",
                 notes: list[str] | None = None) -> np.ndarray:
    """A picture as a uint8 array of the model's size (RGB: HxWx3; "L": HxW), or an `InputError`. A file's
    size is checked from its header, before its pixels are decoded; conversions are added to `notes`."""
    if isinstance(picture, np.ndarray):
        return _checked_size(picture, size, what)
    return _open_file(picture, size, what, lambda img: _decoded(img, mode, what, [] if notes is None else notes))


def _class_ids(img, what: str) -> np.ndarray:
    """A palette or greyscale image's values, or an RGB image's pixels matched to the world's class colours."""
    if img.mode in ("P", "L"):
        return np.asarray(img)
    weights = np.array([65536, 256, 1])
    match = (np.asarray(img.convert("RGB")).astype(np.int64) @ weights)[..., None] \
        == SEG_PALETTE.astype(np.int64) @ weights  # H x W x classes
    if not match.any(-1).all():
        raise InputError(f"{what} has {int((~match.any(-1)).sum())} pixels in colours that are no class's; paint "
                         "with the class colours, or give a palette PNG of class ids")
    return match.argmax(-1)


def read_segmentation(picture: Picture, size: int, what: str) -> np.ndarray:
    """A segmentation map as HxW class ids: an integer array; a palette or greyscale PNG (its indices or
    values are the ids, as `semedit segment` writes them); an RGB PNG in the world's class colours."""
    if isinstance(picture, np.ndarray):
        if not np.issubdtype(picture.dtype, np.integer) or picture.ndim != 2:
            raise InputError(f"{what} must be an HxW array of integer class ids, got {picture.dtype} {picture.shape}")
        return _checked_size(picture, size, what).astype(np.int64)
    return _open_file(picture, size, what, lambda img: _class_ids(img, what)).astype(np.int64)


def input_scribble(image: np.ndarray) -> np.ndarray:
    """The scribble map of any RGB picture (its thin edges, white on black, as HxWx3): the input's own
    layout for a scribble edit of a picture that carries no record."""
    return np.repeat(scribble_map(np.asarray(image))[..., None], 3, axis=2)


def prompt_notes(tokenizer, prompts: dict[str, str]) -> list[str]:
    """A note for every prompt longer than the tokenizer reads (the text encoder sees its first tokens)."""
    notes = []
    for what, text in prompts.items():
        n = len(tokenizer(text).input_ids)
        if n > tokenizer.model_max_length:
            notes.append(f"the {what} is {n} tokens long; the model reads only its first {tokenizer.model_max_length}")
    return notes


def read_record(picture: Picture) -> ToonRecord | None:
    """The record a toon PNG carries (`semedit world render`), or None."""
    from PIL import Image

    from ..world import read_toon_record

    if isinstance(picture, np.ndarray):
        return None
    try:
        return read_toon_record(picture)
    except (OSError, ValueError, Image.DecompressionBombError):  # not a toon PNG: `read_picture` says why
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
    seg: Picture | None = None  # the edited segmentation map (map-editing methods)
    source_seg: Picture | None = None  # the input's own map (estimated by the method when None)
    object_prompt: str | None = None  # layered methods: the target's subject part (T_a); derived for --set edits
    background_prompt: str | None = None  # and its background part (T_b)
    reference_background: Picture | None = None  # layered methods: a picture whose background to take


@dataclass
class PreparedEdit:
    """`EditInputs` checked and completed, before any model is loaded."""
    inputs: EditInputs
    record: ToonRecord | None
    edited: ToonRecord | None  # the record with the changes applied
    source: str
    target: str
    picture_notes: list[str] = field(default_factory=list)  # what was done to read the user's pictures
    prompt_notes: list[str] = field(default_factory=list)  # prompts the model reads only in part
    pictures: dict[str, np.ndarray] = field(default_factory=dict)  # read at `size`
    size: int | None = None

    @property
    def notes(self) -> list[str]:
        return self.picture_notes + self.prompt_notes

    @property
    def layout_kinds(self) -> list[str]:
        kinds = list(self.inputs.controls)
        return kinds + ([self.inputs.layout_from_changes] if self.inputs.layout_from_changes else [])

    def provenance(self) -> dict:
        inputs = self.inputs
        out = {"source_prompt": self.source, "target_prompt": self.target}
        if inputs.reference_background is not None and not isinstance(inputs.reference_background, np.ndarray):
            out["reference_background"] = str(inputs.reference_background)
        if not isinstance(inputs.image, np.ndarray):
            out["input"] = str(inputs.image)
        if inputs.changes:
            out["changes"] = [f"{k}={v}" for k, v in inputs.changes.items()]
        if self.notes:
            out["input_notes"] = list(self.notes)
        return out

    def read_pictures(self, size: int) -> None:
        """Read and check every picture the user gave at the model's image size (before the model loads,
        when the size is known from its configuration)."""
        if self.size == size:
            return
        inputs, notes = self.inputs, []
        pictures = {"image": read_picture(inputs.image, size, "the image", notes=notes)}
        for kind, picture in inputs.controls.items():
            pictures[f"control:{kind}"] = read_picture(picture, size, f"the {kind} map", notes=notes)
        for kind, picture in inputs.source_controls.items():
            pictures[f"source:{kind}"] = read_picture(picture, size, f"the input's {kind} map", notes=notes)
        for key, picture, what in (("seg", inputs.seg, "the edited map"), ("source_seg", inputs.source_seg,
                                                                           "the input's map")):
            if picture is not None:
                pictures[key] = read_segmentation(picture, size, what)
        if inputs.reference_background is not None:
            pictures["reference"] = read_picture(inputs.reference_background, size, "the reference background",
                                                 notes=notes)
        if inputs.mask is not None:
            mask = read_picture(inputs.mask, size, "the mask", mode="L", notes=notes)
            pictures["mask"] = mask > 0 if isinstance(inputs.mask, np.ndarray) else mask > 127  # files: white
            if not pictures["mask"].any():
                raise InputError("the mask is empty: nothing may change")
        self.pictures, self.picture_notes, self.size = pictures, notes, size

    def request(self, backbone, method: str | None = None) -> EditRequest:
        """The EditRequest at the backbone's size: the pictures read, the layout maps of toon records
        derived; layout kinds it has no ControlNet for are refused, and with `method` everything the method
        would refuse (`check_request`)."""
        size = backbone.image_size
        self.read_pictures(size)
        self.prompt_notes = prompt_notes(backbone.tokenizer, {"source prompt": self.source,
                                                              "target prompt": self.target})

        def derived_map(rec, kind):
            return resize_square(layout_map(render(rec, 64), kind), size, nearest=True)

        missing = [k for k in [*self.layout_kinds, *self.inputs.source_controls] if k not in backbone.controlnets]
        if missing:
            raise InputError(f"{backbone.name} has no {missing[0]} ControlNet (has: "
                             f"{', '.join(backbone.controlnets) or 'none'})")
        controls = {kind: self.pictures.get(f"control:{kind}") for kind in self.layout_kinds}
        controls = {kind: derived_map(self.edited, kind) if m is None else m for kind, m in controls.items()}
        source_controls = {kind: self.pictures[f"source:{kind}"] for kind in self.inputs.source_controls}
        if self.record is not None:
            source_controls.update({kind: derived_map(self.record, kind) for kind in controls
                                    if kind not in source_controls and kind in LAYOUT_KINDS})
        elif "scribble" in controls and "scribble" not in source_controls:  # any picture has its edges
            source_controls["scribble"] = input_scribble(self.pictures["image"])
            if "the input's scribble: its edge map" not in self.picture_notes:
                self.picture_notes.append("the input's scribble: its edge map (as the scribble ControlNet's "
                                          "training maps are made)")
        edited_seg, source_seg = self.pictures.get("seg"), self.pictures.get("source_seg")
        if method is not None and REGISTRY.get(method) and REGISTRY[method].segmentation and edited_seg is None \
                and self.edited is not None:  # a toon PNG edited by --set: the maps of both records
            edited_seg = resize_square(render(self.edited, 64).seg, size, nearest=True).astype(np.int64)
            if source_seg is None:
                source_seg = resize_square(render(self.record, 64).seg, size, nearest=True).astype(np.int64)
        object_prompt, background_prompt = self.inputs.object_prompt, self.inputs.background_prompt
        if method is not None and REGISTRY.get(method) and REGISTRY[method].layers and self.edited is not None:
            derived = layer_captions(self.edited)  # a toon PNG edited by --set: the changed record's parts
            object_prompt, background_prompt = object_prompt or derived[0], background_prompt or derived[1]
        request = EditRequest(image=self.pictures["image"], target_prompt=self.target, source_prompt=self.source,
                              mask=self.pictures.get("mask"), controls=controls, source_controls=source_controls,
                              edited_seg=edited_seg, source_seg=source_seg, object_prompt=object_prompt or "",
                              background_prompt=background_prompt or "",
                              reference_image=self.pictures.get("reference"))
        try:
            if method is None:
                request.validate(size, tuple(backbone.controlnets))
            else:
                check_request(method, backbone, request)
        except ValueError as e:
            raise InputError(str(e)) from None
        return request


def prepare_edit(inputs: EditInputs, model: str | None = None, method: str | None = None) -> PreparedEdit:
    """Check `inputs` and derive what they leave out (prompts, the edited record), with no model loaded;
    with `model`, its pictures are read and checked at that model's image size too (from its configs). With
    `method`, a source prompt is asked for only if the method reads one."""
    record = inputs.record if inputs.record is not None else read_record(inputs.image)
    source = inputs.source if inputs.source is not None else (describe(record) if record else None)
    if source is None and (inputs.seg is not None or (method in REGISTRY and not REGISTRY[method].source)):
        source = ""  # a map edit, or a method that reads no source prompt
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
    if inputs.seg is not None and (inputs.changes or inputs.target is not None or inputs.controls):
        raise InputError("give the edit either as an edited map (--seg) or with --set / --target / --pose / --scribble")
    if inputs.source_seg is not None and inputs.seg is None and not inputs.changes:
        raise InputError("the input's map (--source-seg) goes with an edited map (--seg)")
    target = inputs.target
    if target is None and inputs.object_prompt and inputs.background_prompt and edited is None:
        target = f"{inputs.object_prompt}, {inputs.background_prompt}"  # a layered edit told in its parts
    if target is None:
        target = describe(edited) if edited is not None else source if inputs.controls or inputs.seg is not None \
            else None
    if target is None:
        raise InputError("say what should change: give --target, --pose, --scribble, --seg or (toon PNGs) --set")
    prepared = PreparedEdit(inputs, record, edited, source, target)
    if model is not None:
        prepared.read_pictures(image_size_of(model))
    return prepared

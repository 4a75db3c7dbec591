"""The `semedit` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from . import __version__


def _check_output(path: Path, overwrite: bool) -> Path:
    """Refuse to overwrite an existing file unless asked; create the parent folder."""
    if path.suffix.lower() != ".png":
        raise click.BadParameter(f"{path} must end in .png", param_hint="'-o' / '--output'")
    if path.exists() and not overwrite:
        raise click.ClickException(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _parse_changes(items: tuple[str, ...]) -> dict:
    from .world import CATEGORICAL, POSE_RANGES

    changes = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not ATTRIBUTE=VALUE", param_hint="'--set'")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in POSE_RANGES:
            try:
                changes[key] = float(value)
            except ValueError:
                raise click.BadParameter(f"{key} needs a number, got {value!r}", param_hint="'--set'") from None
        elif key == "scene_seed":
            if not value.isdigit():
                raise click.BadParameter(f"scene_seed needs a non-negative integer, got {value!r}",
                                         param_hint="'--set'")
            changes[key] = int(value)
        elif key in CATEGORICAL:
            changes[key] = value
        else:
            known = ", ".join([*CATEGORICAL, *POSE_RANGES, "scene_seed"])
            raise click.BadParameter(f"unknown attribute {key!r}; known: {known}", param_hint="'--set'")
    return changes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semedit")
def main():
    """semedit: feature-preserving semantic image editing with diffusion models.

    Today it holds the toon world (`semedit world ...`): the procedural cartoon portraits that
    the embedded toon-64 models are trained on and that every edit is judged on.
    """


@main.group()
def world():
    """The procedural toon world: sample, export, attribute sheets, ground-truth edits, diptychs."""


_size = click.option("--size", type=click.Choice(["64", "128", "256"]), default="64", show_default=True,
                     help="Output resolution in pixels (square; diptychs are twice as wide).")
_zoom = click.option("--zoom", type=click.IntRange(1, 8), default=3, show_default=True,
                     help="Nearest-neighbour magnification of the picture.")
_overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
_output = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                       help="PNG file to write.")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@_size
@_zoom
@_output
@_overwrite
def sample(count, seed, size, zoom, output, overwrite):
    """Render a grid of portraits with their segmentation, pose and scribble maps."""
    from .world import record_seed, render, sample_record
    from .world.sheets import sample_sheet

    _check_output(output, overwrite)
    renders = [render(sample_record(record_seed(seed, i)), int(size)) for i in range(count)]
    sample_sheet(renders, zoom).save(output)
    click.echo(f"wrote {output} ({count} samples, seed {seed}, {size}px)")


@world.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--count", type=click.IntRange(1), required=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@_size
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: CPU count).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty folder.")
def export(folder, count, seed, size, workers, overwrite):
    """Render COUNT samples to FOLDER: images/, seg/, pose/, scribble/ PNGs and metadata.jsonl."""
    from .world import export_dataset

    t0 = time.perf_counter()
    try:
        export_dataset(folder, count, seed=seed, size=int(size), workers=workers, overwrite=overwrite)
    except (FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    dt = time.perf_counter() - t0
    click.echo(f"wrote {count} samples to {folder} in {dt:.1f} s ({count / dt:.0f} samples/s)")


@world.command()
@click.option("--seed", type=click.IntRange(0), default=3, show_default=True, help="Seed of the base record.")
@_size
@click.option("--zoom", type=click.IntRange(1, 8), default=2, show_default=True, help="Magnification.")
@_output
@_overwrite
def sheet(seed, size, zoom, output, overwrite):
    """One row per attribute, one column per value, all else from one base record."""
    from .world import render, sample_record
    from .world.sheets import attribute_sheet

    _check_output(output, overwrite)
    base = sample_record(seed).replace(head_x=0.0, head_y=0.0, head_scale=1.0, head_tilt=0.0)
    attribute_sheet(base, lambda r: render(r, int(size)), zoom).save(output)
    click.echo(f"wrote {output}")


@world.command()
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the source record.")
@click.option("--set", "changes", multiple=True, required=True, metavar="ATTRIBUTE=VALUE",
              help="An attribute to change (repeatable), e.g. --set expression=laughing.")
@_size
@_zoom
@_output
@_overwrite
def edit(seed, changes, size, zoom, output, overwrite):
    """A ground-truth edit: source, target, true edit region and changed pixels."""
    from .world import ground_truth_edit, sample_record
    from .world.sheets import edit_sheet

    parsed = _parse_changes(changes)
    _check_output(output, overwrite)
    try:
        e = ground_truth_edit(sample_record(seed), int(size), **parsed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    edit_sheet([e], zoom).save(output)
    click.echo(f"wrote {output}: changed {', '.join(e.changed)}; region covers {int(e.region.sum())} pixels")


@world.command(name="render")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the record.")
@click.option("--set", "changes", multiple=True, metavar="ATTRIBUTE=VALUE",
              help="An attribute to set (repeatable), e.g. --set hair_colour=red.")
@_size
@_output
@_overwrite
def render_one(seed, changes, size, output, overwrite):
    """One toon image that carries its record, ready for `semedit edit` (source prompt and maps derived)."""
    from .world import describe, sample_record, save_toon_png

    parsed = _parse_changes(changes)
    _check_output(output, overwrite)
    try:
        rec = sample_record(seed).replace(**parsed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    save_toon_png(output, rec, int(size))
    click.echo(f"wrote {output}: {describe(rec)}")


@world.command()
@click.option("-n", "--count", type=click.IntRange(1, 32), default=4, show_default=True, help="Number of pairs.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Base seed.")
@click.option("--kind", type=click.Choice(["costume", "expression"]), default=None,
              help="Edit direction (default: either).")
@_zoom
@_output
@_overwrite
def pairs(count, seed, kind, zoom, output, overwrite):
    """Diptychs: one identity before and after a paired edit (the MCDM paper's pair canvas)."""
    from .world import diptych, record_seed, sample_pair
    from .world.sheets import diptych_sheet

    _check_output(output, overwrite)
    dips = []
    for i in range(count):
        source, target, k = sample_pair(record_seed(seed, i), kind)
        dips.append(diptych(source, target, template=k))
    diptych_sheet(dips, zoom).save(output)
    for d in dips:
        click.echo(f"{d.caption} | {d.left_caption} | {d.right_caption}")
    click.echo(f"wrote {output}")


def _load_rgb(path: Path, size: int, what: str):
    """An image file as HxWx3 uint8 of the model's size, or a clear error."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path).convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise click.ClickException(f"cannot read {what} {path}: {e}") from None
    if img.size != (size, size):
        raise click.ClickException(f"{what} {path} is {img.width}x{img.height}; the model needs {size}x{size}")
    return np.asarray(img)


@main.command()
@click.argument("prompt")
@click.option("--model", default="toon-64", show_default=True, help="toon-64, a diffusers SD folder or a hub id.")
@click.option("--pose", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An OpenPose-style drawing to follow (ControlNet 'pose').")
@click.option("--scribble", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A scribble map (white lines on black) to follow (ControlNet 'scribble').")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1, 1000), default=50, show_default=True, help="DDIM steps.")
@click.option("--cfg", type=click.FloatRange(0, 50), default=7.5, show_default=True,
              help="Classifier-free guidance scale.")
@click.option("--negative-prompt", default="", help="Text to steer away from.")
@_output
@_overwrite
def generate(prompt, model, pose, scribble, seed, steps, cfg, negative_prompt, output, overwrite):
    """Generate an image from PROMPT (optionally following a pose drawing or a scribble)."""
    import torch
    from PIL import Image

    from .models.backbone import BackboneNotFound, load_backbone

    if pose and scribble:
        raise click.UsageError("give --pose or --scribble, not both")
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    _check_output(output, overwrite)
    kind = "pose" if pose else "scribble" if scribble else None
    try:
        bb = load_backbone(model, controlnets=[kind] if kind and model == "toon-64" else None)
    except (BackboneNotFound, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if kind and kind not in bb.controlnets:
        raise click.ClickException(f"{model} has no {kind} ControlNet")
    pipe = bb.pipeline(kind)
    size = bb.image_size
    kw = {}
    if kind:
        kw["image"] = Image.fromarray(_load_rgb(pose or scribble, size, f"--{kind}"))
    t0 = time.perf_counter()
    image = pipe(prompt, negative_prompt=negative_prompt or None, num_inference_steps=steps, guidance_scale=cfg,
                 generator=torch.Generator().manual_seed(seed), height=size, width=size, **kw).images[0]
    dt = time.perf_counter() - t0
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("semedit", json.dumps({"prompt": prompt, "model": model, "seed": seed, "steps": steps, "cfg": cfg,
                                         "control": kind, "negative_prompt": negative_prompt}))
    image.save(output, pnginfo=meta)
    click.echo(f"wrote {output} ({size}x{size}, {steps} steps, {dt:.1f} s)")


def _field_help(cls) -> dict[str, str]:
    """A config field's trailing comment (the paper's default and section) as its option help."""
    import inspect
    import re

    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^=\n]+=[^#\n]*#\s*(.+)$", src, re.M)}


def _config_options(cls):
    """One option per config field (bool: --x/--no-x), its default the paper's."""
    import dataclasses
    import typing

    from .methods.base import plain_type

    hints, helps = typing.get_type_hints(cls), _field_help(cls)
    opts = []
    for f in dataclasses.fields(cls):
        t, flag = plain_type(hints[f.name]), "--" + f.name.replace("_", "-")  # X | None: may be left out
        if t is bool:
            opts.append(click.option(f"{flag}/--no-{flag[2:]}", f.name, default=f.default, show_default=True,
                                     help=helps.get(f.name)))
        elif t in (int, float, str):
            opts.append(click.option(flag, f.name, type=t, default=f.default, show_default=True,
                                     help=helps.get(f.name)))
    return opts


_EDIT_COMMON = ("image", "target", "source", "changes", "layout_from_set", "mask", "pose", "scribble", "source_pose",
                "source_scribble", "control", "source_control", "controlnet", "model", "seed", "output", "overwrite",
                "save_intermediates")


def _named_paths(items: tuple[str, ...], option: str, must_exist: bool = True) -> dict[str, str]:
    """NAME=VALUE items of a repeatable option as {NAME: VALUE} (with must_exist, VALUE is a file)."""
    out = {}
    for item in items:
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not name or not value:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=f"'{option}'")
        if must_exist and not Path(value).is_file():
            raise click.BadParameter(f"{value} is not a file", param_hint=f"'{option}'")
        out[name] = value
    return out


def _edit_command(name: str, cls) -> click.Command:
    import dataclasses

    def run(**kw):
        _run_edit(name, cls, kw)

    doc = (REGISTRY_DOCS.get(name) or "").strip()
    cmd = click.Command(name, callback=run, help=doc, short_help=doc.split("\n")[0][:80] if doc else None)
    image_opt = click.Path(exists=True, dir_okay=False, path_type=Path)
    params = [
        click.Argument(["image"], type=image_opt),
        click.Option(["-t", "--target"], default=None, help="Target prompt: the edited image's description. "
                     "Optional for layout-only edits (then the source prompt is kept)."),
        click.Option(["-s", "--source"], default=None, help="Source prompt: the input image's description. "
                     "Derived for toon PNGs (made by `semedit world render`) when omitted."),
        click.Option(["--set", "changes"], multiple=True, metavar="ATTRIBUTE=VALUE",
                     help="Toon PNGs only: the edit as attribute changes (repeatable), e.g. --set hair_colour=red; "
                          "the target prompt (and the target pose or scribble, with --layout) are derived."),
        click.Option(["--layout", "layout_from_set"], type=click.Choice(["none", "pose", "scribble"]), default="none",
                     show_default=True, help="With --set: also give the target pose drawing or scribble of the "
                                             "changed record (a layout edit)."),
        click.Option(["--mask"], type=image_opt, default=None,
                     help="Greyscale PNG, white = may change (methods that estimate a mask skip estimation)."),
        click.Option(["--pose"], type=image_opt, default=None, help="Target pose drawing (needs a pose ControlNet)."),
        click.Option(["--scribble"], type=image_opt, default=None,
                     help="Target scribble map (needs a scribble ControlNet)."),
        click.Option(["--source-pose"], type=image_opt, default=None,
                     help="The input's pose drawing (derived for toon PNGs)."),
        click.Option(["--source-scribble"], type=image_opt, default=None,
                     help="The input's scribble map (derived for toon PNGs)."),
        click.Option(["--control"], multiple=True, metavar="NAME=PNG",
                     help="Target layout map for the ControlNet NAME (repeatable), e.g. --control mlsd=lines.png "
                          "for a Hough-line ControlNet; --pose P is --control pose=P."),
        click.Option(["--source-control"], multiple=True, metavar="NAME=PNG",
                     help="The input's own layout map for the ControlNet NAME (repeatable)."),
        click.Option(["--controlnet"], multiple=True, metavar="NAME=FOLDER_OR_HUB_ID",
                     help="A ControlNet to load with --model under NAME (repeatable; toon-64 has pose and "
                          "scribble already)."),
        click.Option(["--model"], default="toon-64", show_default=True,
                     help="toon-64, a diffusers SD folder or a hub id."),
        click.Option(["--seed"], type=click.IntRange(0), default=0, show_default=True),
        click.Option(["-o", "--output"], type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="PNG file to write (a .json sidecar goes next to it)."),
        click.Option(["--overwrite"], is_flag=True, help="Replace existing outputs."),
        click.Option(["--save-intermediates"], is_flag=True,
                     help="Also write the mask and intermediates next to the output."),
    ]
    clash = {o.name for o in params} & {f.name for f in dataclasses.fields(cls)}
    if clash:
        raise RuntimeError(f"{name}'s config fields clash with edit options: {clash}")
    cmd.params = params
    for opt in _config_options(cls):
        opt(cmd)
    return cmd


REGISTRY_DOCS: dict[str, str] = {}


class _EditGroup(click.Group):
    """One subcommand per registered method, built on demand (importing the methods loads torch)."""

    def _methods(self):
        import inspect
        import sys

        from .methods import REGISTRY

        for name, m in REGISTRY.items():  # a method's help: its module docstring's first paragraph, then its own
            about = (sys.modules[m.edit.__module__].__doc__ or "").strip().split("\n\n")[0]
            usage = inspect.cleandoc(m.edit.__doc__ or "")
            REGISTRY_DOCS.setdefault(name, f"{about}\n\n{usage}".strip())
        return REGISTRY

    def list_commands(self, ctx):
        return sorted(self._methods())

    def get_command(self, ctx, name):
        methods = self._methods()
        return _edit_command(name, methods[name].config) if name in methods else None


@main.group(cls=_EditGroup)
def edit():
    """Edit an image with a method (`semedit edit METHOD --help` lists its settings, defaults from its paper).

    Example: semedit edit diffedit toon.png -t "a cartoon woman with red hair" -o out.png
    """


def _run_edit(name, cls, kw):
    import numpy as np
    from PIL import Image

    from .methods import EditRequest, make_config, run_edit, save_result
    from .methods.base import result_paths
    from .models.backbone import BackboneNotFound, load_backbone
    from .world import describe, read_toon_record, render

    output: Path = kw["output"]
    if output.suffix.lower() != ".png":
        raise click.BadParameter(f"{output} must end in .png", param_hint="'-o' / '--output'")
    if not kw["overwrite"]:
        clash = [str(p) for p in result_paths(output) if p.exists()]
        if clash:
            raise click.ClickException(f"{', '.join(clash)} exist(s); pass --overwrite to replace")
    try:
        config = make_config(name, **{k: v for k, v in kw.items() if k not in _EDIT_COMMON})
    except (ValueError, TypeError) as e:
        raise click.ClickException(str(e)) from None
    try:
        record = read_toon_record(kw["image"])
    except (OSError, ValueError):
        record = None
    layout = {**{k: kw[k] for k in ("pose", "scribble") if kw[k]}, **_named_paths(kw["control"], "--control")}
    source_layout = {**{k: kw[f"source_{k}"] for k in ("pose", "scribble") if kw[f"source_{k}"]},
                     **_named_paths(kw["source_control"], "--source-control")}
    extra_nets = _named_paths(kw["controlnet"], "--controlnet", must_exist=False)
    source = kw["source"] if kw["source"] is not None else (describe(record) if record else None)
    if source is None:
        raise click.UsageError("give --source (the input's description); it can only be derived for toon PNGs")
    edited = None
    if kw["changes"]:
        if record is None:
            raise click.UsageError("--set needs a toon PNG (made by `semedit world render`), which carries its record")
        if kw["target"] is not None or layout:
            raise click.UsageError("give the edit either with --set or with --target / --pose / --scribble")
        try:
            edited = record.replace(**_parse_changes(kw["changes"]))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--set'") from None
    elif kw["layout_from_set"] != "none":
        raise click.UsageError("--layout goes with --set")
    target = kw["target"] if kw["target"] is not None else (
        describe(edited) if edited is not None else source if layout else None)
    if target is None:
        raise click.UsageError("give --target, --pose, --scribble or (toon PNGs) --set: what should change?")
    try:
        bb = load_backbone(kw["model"], controlnets=extra_nets or None)
    except (BackboneNotFound, ValueError) as e:
        raise click.ClickException(str(e)) from None
    size = bb.image_size
    image = _load_rgb(kw["image"], size, "image")
    def layout_map(rec, kind):
        r = render(rec, 64)
        m = r.pose if kind == "pose" else np.repeat(r.scribble[..., None], 3, axis=2)
        return m if size == 64 else np.asarray(Image.fromarray(m).resize((size, size), Image.NEAREST))

    controls, source_controls = {}, {}
    kinds = list(layout) + ([kw["layout_from_set"]] if kw["layout_from_set"] != "none" else [])
    for kind in kinds:
        if kind not in bb.controlnets:
            raise click.ClickException(f"{kw['model']} has no {kind} ControlNet (has: "
                                       f"{', '.join(bb.controlnets) or 'none'})")
        controls[kind] = (_load_rgb(layout[kind], size, f"--control {kind}") if kind in layout
                          else layout_map(edited, kind))
        if kind in source_layout:
            source_controls[kind] = _load_rgb(source_layout[kind], size, f"--source-control {kind}")
        elif record is not None and kind in ("pose", "scribble"):
            source_controls[kind] = layout_map(record, kind)
    mask = None
    if kw["mask"]:
        m = Image.open(kw["mask"]).convert("L")
        if m.size != (size, size):
            raise click.ClickException(f"--mask is {m.width}x{m.height}; the model needs {size}x{size}")
        mask = np.asarray(m) > 127
    request = EditRequest(image=image, target_prompt=target, source_prompt=source, mask=mask, controls=controls,
                          source_controls=source_controls)
    try:
        request.validate(size, tuple(bb.controlnets))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    from tqdm import tqdm

    bar = tqdm(desc=f"{name}: U-Net evaluations", unit="eval")
    def count(module, args, output):  # returns None: a forward hook's return value would replace the output
        bar.update(args[0].shape[0])

    hook = bb.unet.register_forward_hook(count)
    try:
        result = run_edit(name, bb, request, config, seed=kw["seed"])
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    finally:
        hook.remove()
        bar.close()
    result.provenance.update(source_prompt=source, target_prompt=target, input=str(kw["image"]),
                             **({"changes": list(kw["changes"])} if kw["changes"] else {}))
    files = save_result(result, output, kw["save_intermediates"], overwrite=kw["overwrite"])
    click.echo(f"wrote {', '.join(str(f) for f in files)} ({result.unet_evaluations} U-Net evaluations, "
               f"{result.provenance['seconds']:.1f} s)")


def _parse_method_settings(items, methods) -> dict:
    """--config METHOD.FIELD=VALUE items as {method: config}, values typed by the config field."""
    from .methods import make_config
    from .methods.base import parse_setting

    changes: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise click.BadParameter(f"{item!r} is not METHOD.FIELD=VALUE", param_hint="'--config'")
        if method not in methods:
            raise click.BadParameter(f"{method!r} is not among --methods", param_hint="'--config'")
        try:
            changes.setdefault(method, {})[name] = parse_setting(method, name, value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--config'") from None
    try:
        return {m: make_config(m, **c) for m, c in changes.items()}
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--config'") from None


@main.command()
@click.option("--methods", default="sdedit,diffedit", show_default=True, help="Comma-separated method names.")
@click.option("--tasks", "kinds", default="all", show_default=True,
              help="Comma-separated task kinds (expression, hair, glasses, costume, background, eyes, mouth, pose, "
                   "scribble) or all.")
@click.option("-n", "--n", "count", type=click.IntRange(1), default=50, show_default=True, help="Tasks per kind.")
@click.option("--model", default="toon-64", show_default=True, help="toon-64, a diffusers SD folder or a hub id.")
@click.option("--evaluator", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Evaluator folder (default: toon-64's).")
@click.option("--config", "settings", multiple=True, metavar="METHOD.FIELD=VALUE",
              help="A method setting (repeatable), e.g. --config sdedit.strength=0.8.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the task set.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/bench"),
              show_default=True, help="Folder for results.json, table.md and grid.png.")
@click.option("--overwrite", is_flag=True, help="Replace results already in --out.")
@click.option("--rejudge", is_flag=True,
              help="Run no method: judge the outputs kept in --out again (e.g. with a retrained --evaluator; CLIP "
                   "figures with --model's CLIP) and rewrite its results.json, table.md and grid.png.")
@click.option("--lpips-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LPIPS (AlexNet, v0.1) safetensors made by `semedit convert-weights lpips`.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FID Inception-v3 safetensors made by `semedit convert-weights inception`.")
@click.option("--arcface-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ArcFace IResNet safetensors made by `semedit convert-weights arcface`.")
def bench(methods, kinds, count, model, evaluator, settings, seed, out, overwrite, rejudge, lpips_weights,
          inception_weights, arcface_weights):
    """The toon benchmark: every method on the same seeded edit tasks, judged by the evaluator (and by the
    papers' LPIPS, FID and ArcFace where their weights are given)."""
    from tqdm import tqdm

    from .eval.bench import TASK_KINDS, check_kept_run, rejudge as rejudge_run, run_benchmark
    from .eval.paper_nets import PaperNets
    from .methods import REGISTRY
    from .models.backbone import BackboneNotFound, load_backbone, load_evaluator

    def paper_nets():
        try:
            return PaperNets.from_files(lpips_weights, inception_weights, arcface_weights)
        except (FileNotFoundError, ValueError) as e:
            raise click.ClickException(str(e)) from None

    if rejudge:
        try:
            check_kept_run(out)  # before loading any model
            nets = paper_nets()
            bb = load_backbone(model)
            report = rejudge_run(out, load_evaluator(evaluator), bb.clip, bb.clip_processor, nets)
        except (FileNotFoundError, ValueError, BackboneNotFound) as e:
            raise click.ClickException(str(e)) from None
        click.echo((out / "table.md").read_text())
        click.echo(f"judged {len(report['tasks'])} rows again: rewrote {out}/results.json, table.md, grid.png")
        return

    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in REGISTRY]
    if not names or unknown:
        raise click.BadParameter(f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: "
                                 f"{', '.join(sorted(REGISTRY))}", param_hint="'--methods'")
    kinds = list(TASK_KINDS) if kinds == "all" else [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in TASK_KINDS]
    if not kinds or bad:
        raise click.BadParameter(f"unknown task kind(s) {', '.join(bad) or '(none given)'}; known: "
                                 f"{', '.join(TASK_KINDS)}", param_hint="'--tasks'")
    configs = _parse_method_settings(settings, names)
    if not overwrite and (out / "results.json").exists():
        raise click.ClickException(f"{out} holds benchmark results; pass --overwrite to replace them")
    nets = paper_nets()
    try:
        bb = load_backbone(model)
        ev = load_evaluator(evaluator)
    except (BackboneNotFound, ValueError) as e:
        raise click.ClickException(str(e)) from None
    bar = tqdm(total=len(names) * len(kinds) * count, desc="bench", unit="edit")
    report = run_benchmark(bb, ev, names, kinds, count, out, seed, configs, overwrite,
                           progress=lambda row: bar.update(1), paper_nets=nets)
    bar.close()
    click.echo((out / "table.md").read_text())
    click.echo(f"wrote {out}/results.json, table.md, grid.png ({report['wall_seconds']:.0f} s)")


@main.command("convert-weights")
@click.argument("kind", type=click.Choice(["lpips", "inception", "arcface"]))
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .safetensors file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def convert_weights(kind, sources, out, overwrite):
    """Turn the published weights of a paper metric network into the safetensors `semedit bench` loads.

    \b
    lpips:     torchvision's alexnet-owt-7be5be79.pth and the lpips package's weights/v0.1/alex.pth
    inception: pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    arcface:   insightface arcface_torch's backbone.pth (any iresnet depth)
    """
    from .eval.paper_nets import convert_weights as convert

    if out.suffix != ".safetensors":
        raise click.BadParameter("must end in .safetensors", param_hint="'--out'")
    try:
        path = convert(kind, list(sources), out, overwrite)
    except (FileExistsError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {path} ({kind}); use it with `semedit bench --{kind}-weights {path}`")


@main.group()
def train():
    """Train the embedded toon-64 family (resumable; each prints where it saved and what it measured).

    Order: data, tokenizer, clip, vae, then the U-Net, ControlNets and the evaluator. Runs keep
    checkpoints in --run-dir and continue from them unless --fresh.
    """


def _train_options(name):
    """Options shared by the training commands; steps, batch size and lr default to the recipe's TrainConfig."""
    def deco(f):
        for opt in reversed([
            click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
                         show_default=True, help="Render cache (made by `semedit train data`)."),
            click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(f"runs/{name}"),
                         show_default=True, help="Checkpoints, loss log and report."),
            click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Where the final weights go (default: the embedded toon-64 folder)."),
            click.option("--steps", type=click.IntRange(1), default=None, help="Default: the recipe's."),
            click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the recipe's."),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Default: the recipe's."),
            click.option("--seed", type=click.IntRange(0), default=0, show_default=True),
            click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start again."),
            click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Minutes: shorten --steps (and the schedule) to what fits, at the pace measured "
                              "during warm-up."),
        ]):
            f = opt(f)
        return f
    return deco


def _train_config(default, steps, batch_size, lr, seed, time_budget=None):
    import dataclasses

    steps = steps or default.steps
    return dataclasses.replace(default, steps=steps, batch_size=batch_size or default.batch_size,
                               lr=lr or default.lr, seed=seed, time_budget_minutes=time_budget,
                               checkpoint_every=min(default.checkpoint_every, steps),
                               log_every=min(default.log_every, steps), warmup=min(default.warmup, steps // 2))


def _report(name, report, where):
    click.echo(f"{name}: saved to {where}")
    click.echo(json.dumps(report, indent=2))


@train.command()
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True)
@click.option("-n", "--count", type=click.IntRange(1), default=40000, show_default=True, help="Training samples.")
@click.option("--heldout", type=click.IntRange(1), default=2000, show_default=True, help="Held-out samples.")
@click.option("--pairs", type=click.IntRange(1), default=10000, show_default=True, help="Diptych pairs.")
@click.option("--workers", type=click.IntRange(1, 64), default=None)
def data(cache, count, heldout, pairs, workers):
    """Render the training caches: world samples (seed 1), held-out samples (seed 2), diptychs (seed 3)."""
    from .models.data import PairCache, RenderCache

    RenderCache.build(cache / "train", count, seed=1, workers=workers)
    RenderCache.build(cache / "heldout", heldout, seed=2, workers=workers)
    PairCache.build(cache / "pairs", pairs, seed=3, workers=workers)
    click.echo(f"caches ready in {cache}")


@train.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tokenizer folder (default: the embedded toon-64 tokenizer).")
@click.option("--vocab-size", type=click.IntRange(300), default=1024, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
def tokenizer(out, vocab_size, seed):
    """Train the CLIP-format BPE tokenizer on world captions."""
    from .models.toon64 import TOON64_DIR
    from .models.train_clip import train_tokenizer

    out = out or TOON64_DIR / "tokenizer"
    tok = train_tokenizer(out, vocab_size, seed)
    click.echo(f"tokenizer: {len(tok)} tokens, saved to {out}")


@train.command()
@_train_options("vae")
@click.option("--decoder-only", is_flag=True,
              help="Fine-tune the decoder of --init-from (default: the embedded VAE) on its encoder's latents, iris "
                   "pixels weighted by --iris-weight; the encoder, latents and latent scale stay as they are.")
@click.option("--iris-weight", type=click.FloatRange(min=0), default=None,
              help="An iris pixel's loss weight is 1 + this. Default: 0 from scratch, 30 with --decoder-only.")
@click.option("--init-from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="With --decoder-only: the VAE whose decoder is fine-tuned (default: the embedded one).")
def vae(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, decoder_only, iris_weight, init_from):
    """Train the VAE (AutoencoderKL 64x64x3 -> 4x16x16); measures held-out PSNR and the latent scale."""
    from .models.toon64 import TOON64_DIR
    from .models.train_vae import DECODER_TRAIN, IRIS_WEIGHT, VAE_TRAIN, finetune_decoder, train_vae

    out = out or TOON64_DIR / "vae"
    if not decoder_only:
        if init_from is not None:
            raise click.UsageError("--init-from goes with --decoder-only")
        report = train_vae(cache, run_dir, out, _train_config(VAE_TRAIN, steps, batch_size, lr, seed, time_budget),
                           resume=not fresh, iris_weight=iris_weight or 0.0)
    else:
        if run_dir == Path("runs/vae"):
            run_dir = Path("runs/vae-decoder")
        report = finetune_decoder(cache, init_from or TOON64_DIR / "vae", run_dir, out,
                                  _train_config(DECODER_TRAIN, steps, batch_size, lr, seed, time_budget),
                                  IRIS_WEIGHT if iris_weight is None else iris_weight, resume=not fresh)
    _report("vae", report, out)


def _init_from_option(what: str):
    return click.option("--init-from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
                        help=f"Start from these {what} weights (e.g. the embedded ones) instead of from scratch "
                             "(a fresh optimizer and schedule).")


@train.command()
@_train_options("clip")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tokenizer folder (default: the embedded one).")
@click.option("--text-encoder/--no-text-encoder", default=True, show_default=True,
              help="Also write the text tower as text_encoder/ (--no-text-encoder keeps the one a trained U-Net uses).")
@click.option("--text-attribute-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of a text-side loss that reads every attribute a caption names from the text tower "
                   "(keeps the face words apart for the U-Net; 0 = contrastive only). Default: the recipe's, 1 "
                   "(0 with --freeze-text-tower).")
@click.option("--image-attribute-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of an image-side loss that reads every attribute an image shows from the vision tower "
                   "(makes its features carry the small face parts; 0 = contrastive only).")
@_init_from_option("CLIP")
@click.option("--freeze-text-tower", is_flag=True,
              help="Keep the text tower of --init-from fixed (the U-Net trained on it stays valid); train the "
                   "vision tower and the projections.")
@click.option("--every-value-negatives", is_flag=True,
              help="A hard-negative image meets the captions of every other value of the changed attribute, "
                   "not one random other value.")
def clip(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, tokenizer_dir, text_encoder,
         text_attribute_weight, image_attribute_weight, init_from, freeze_text_tower, every_value_negatives):
    """Train the small CLIP (text + vision towers, contrastive); measures zero-shot accuracy and retrieval."""
    from .models.toon64 import TOON64_DIR
    from .models.train_clip import CLIP_TRAIN, TEXT_ATTRIBUTE_WEIGHT, train_clip

    if text_attribute_weight is None:
        text_attribute_weight = 0.0 if freeze_text_tower else TEXT_ATTRIBUTE_WEIGHT
    out = out or TOON64_DIR
    try:
        report = train_clip(cache, tokenizer_dir or TOON64_DIR / "tokenizer", run_dir, out,
                            _train_config(CLIP_TRAIN, steps, batch_size, lr, seed, time_budget), resume=not fresh,
                            write_text_encoder=text_encoder, text_attribute_weight=text_attribute_weight,
                            image_attribute_weight=image_attribute_weight, init_from=init_from,
                            freeze_text_tower=freeze_text_tower, every_value_negatives=every_value_negatives)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    _report("clip", report, out / "clip")


def _family_option():
    return click.option("--family", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The family folder this part builds on (its VAE, text encoder, U-Net) and, without "
                             "--out, writes into (default: the embedded toon-64).")


def _text_encoder_option():
    return click.option("--text-encoder", "text_encoder_dir", default=None,
                        type=click.Path(file_okay=False, exists=True, path_type=Path),
                        help="Condition on this text encoder: a text_encoder folder or a CLIP folder (its text "
                             "tower; e.g. a `train clip` run's out/clip). Default: the family's.")


@train.command()
@_train_options("unet")
@_init_from_option("U-Net")
@_text_encoder_option()
@_family_option()
@click.option("--face-loss-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight the loss of single portraits towards the face: each latent pixel by 1 + this x its "
                   "fraction of skin, eyes, brows, mouth, glasses, beard, tears and nose (0 = plain MSE).")
def unet(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, text_encoder_dir,
         family, face_loss_weight):
    """Train the text-conditional U-Net (caption dropout, diptychs, EMA) on VAE latents."""
    from .models.backbone import write_family_index
    from .models.toon64 import TOON64_DIR
    from .models.train_unet import UNET_TRAIN, train_unet

    family = family or TOON64_DIR
    out = out or family / "unet"
    report = train_unet(cache, family, run_dir, out,
                        _train_config(UNET_TRAIN, steps, batch_size, lr, seed, time_budget), resume=not fresh,
                        init_from=init_from, text_encoder_dir=text_encoder_dir, face_loss_weight=face_loss_weight)
    write_family_index(family)
    _report("unet", report, out)


@train.command()
@click.argument("kind", type=click.Choice(["pose", "scribble"]))
@_train_options("controlnet")
@_init_from_option("ControlNet")
@_text_encoder_option()
@click.option("--unet", "unet_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The frozen U-Net to steer (default: the family's).")
@_family_option()
def controlnet(kind, cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, text_encoder_dir,
               unet_dir, family):
    """Train a ControlNet for the pose drawing or the scribble map on the frozen U-Net."""
    from .models.toon64 import TOON64_DIR
    from .models.train_controlnet import CONTROLNET_TRAIN, train_controlnet

    family = family or TOON64_DIR
    out = out or family / f"controlnet-{kind}"
    if run_dir == Path("runs/controlnet"):
        run_dir = Path(f"runs/controlnet-{kind}")
    report = train_controlnet(kind, cache, family, run_dir, out,
                              _train_config(CONTROLNET_TRAIN, steps, batch_size, lr, seed, time_budget),
                              resume=not fresh,
                              init_from=init_from, text_encoder_dir=text_encoder_dir, unet_dir=unet_dir)
    _report(f"controlnet-{kind}", report, out)


@train.command()
@_train_options("evaluator")
@_init_from_option("evaluator")
@click.option("--face-branch/--no-face-branch", default=True, show_default=True,
              help="Read expression, eye colour and face shape from an aligned, enlarged face crop (added "
                   "to an --init-from model that has none).")
@click.option("--face-only", is_flag=True, help="Train the face branch alone (the rest stays as it is).")
@click.option("--face-augment", is_flag=True,
              help="Jitter the face crop's pose and mirror half the crops while training (FaceAugment).")
@_family_option()
def evaluator(cache, run_dir, out, steps, batch_size, lr, seed, fresh, time_budget, init_from, face_branch,
              face_only, face_augment, family):
    """Train the attribute evaluator (the benchmark's judge) on renders and VAE reconstructions."""
    from .models.evaluator import FACE_ATTRIBUTES
    from .models.toon64 import TOON64_DIR
    from .models.train_evaluator import EVALUATOR_TRAIN, FaceAugment, train_evaluator

    family = family or TOON64_DIR
    out = out or family / "evaluator"
    report = train_evaluator(cache, family / "vae", run_dir, out,
                             _train_config(EVALUATOR_TRAIN, steps, batch_size, lr, seed, time_budget),
                             resume=not fresh, init_from=init_from,
                             face_attributes=FACE_ATTRIBUTES if face_branch else (), face_only=face_only,
                             face_augment=FaceAugment() if face_augment else None)
    _report("evaluator", report, out)


@train.command(name="all")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Wall-clock budget for the whole family; each part's steps are fitted to its share of what is "
                   "left (TrainAllPlan).")
@click.option("--family", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the family goes (default: the embedded toon-64 folder, overwritten).")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Run folders (checkpoints, logs, reports) and the clock, train_all_times.json.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Render cache (default: RUNS/cache).")
@click.option("--fresh", is_flag=True, help="Start every part again and reset the clock.")
@click.pass_context
def train_all(ctx, hours, family, runs_dir, cache, fresh):
    """Train the whole family from scratch, in order, within --hours; stopped and run again, it goes on
    where it was (finished parts are skipped, the others resume from their checkpoints) and keeps counting."""
    from .models.toon64 import TOON64_DIR
    from .models.train_all import PARTS, Clock, TrainAllPlan, step_budget

    plan, family, cache = TrainAllPlan(hours=hours), family or TOON64_DIR, cache or runs_dir / "cache"
    clock_path = runs_dir / "train_all_times.json"
    if fresh and clock_path.exists():
        clock_path.unlink()
    clock = Clock(clock_path)
    for part in PARTS:
        if part in clock.done:
            click.echo(f"[train all] {part}: done before ({clock.spent[part] / 60:.1f} min)")
            continue
        if part == "data":
            cmd, kw = data, {"cache": cache}
        elif part == "tokenizer":
            cmd, kw = tokenizer, {"out": family / "tokenizer"}
        else:
            minutes = step_budget(plan, part, clock.spent)
            click.echo(f"[train all] {part}: {minutes:.1f} min of training steps "
                       f"({sum(clock.spent.values()) / 60:.1f} of {hours * 60:.0f} min spent)")
            kw = {"cache": cache, "run_dir": runs_dir / part, "fresh": fresh, "time_budget": minutes}
            if part == "vae":
                cmd, kw = vae, {**kw, "out": family / "vae"}
            elif part == "clip":
                cmd, kw = clip, {**kw, "out": family, "tokenizer_dir": family / "tokenizer"}
            elif part.startswith("controlnet"):
                cmd, kw = controlnet, {**kw, "kind": part.split("-")[1], "family": family}
            else:
                cmd, kw = {"evaluator": evaluator, "unet": unet}[part], {**kw, "family": family}
        clock.run(part, lambda: ctx.invoke(cmd, **kw))
        click.echo(f"[train all] {part} took {clock.spent[part] / 60:.1f} min")
    total = sum(clock.spent.values()) / 60
    click.echo(f"[train all] total {total:.1f} min (budget {hours * 60:.0f}); family in {family}, "
               f"times in {clock_path}")


if __name__ == "__main__":  # pragma: no cover
    main()

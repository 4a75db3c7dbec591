"""`semedit edit METHOD`: one subcommand per registered method, its settings generated from the method's
config dataclass (the paper's defaults; help from each field's metadata)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click

from .common import user_errors

_IMAGE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _edit_params(segmentation: bool = False, layers: bool = False) -> list[click.Parameter]:
    """The options of a method: what to edit, how to say the edit (prompts and layouts, or for methods that
    edit by segmentation map the maps; layered methods also the subject and background parts), the model,
    the outputs."""
    by_text_and_layout = [
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
        click.Option(["--mask"], type=_IMAGE, default=None,
                     help="Greyscale PNG, white = the subject, whose identity is kept (M_r; default: segmented)."
                     if layers else "Greyscale PNG, white = may change (methods that estimate a mask skip "
                                    "estimation)."),
        click.Option(["--pose"], type=_IMAGE, default=None, help="Target pose drawing (needs a pose ControlNet)."),
        click.Option(["--scribble"], type=_IMAGE, default=None,
                     help="Target scribble map (needs a scribble ControlNet)."),
        click.Option(["--source-pose"], type=_IMAGE, default=None,
                     help="The input's pose drawing (derived for toon PNGs)."),
        click.Option(["--source-scribble"], type=_IMAGE, default=None,
                     help="The input's scribble map (derived for toon PNGs)."),
        click.Option(["--control"], multiple=True, metavar="NAME=PNG",
                     help="Target layout map for the ControlNet NAME (repeatable), e.g. --control mlsd=lines.png "
                          "for a Hough-line ControlNet; --pose P is --control pose=P."),
        click.Option(["--source-control"], multiple=True, metavar="NAME=PNG",
                     help="The input's own layout map for the ControlNet NAME (repeatable)."),
        click.Option(["--controlnet"], multiple=True, metavar="NAME=FOLDER_OR_HUB_ID",
                     help="A ControlNet to load with --model under NAME (repeatable; toon-64 has pose and "
                          "scribble already)."),
    ]
    by_map = [
        click.Option(["--seg"], type=_IMAGE, default=None,
                     help="The edited segmentation map: a palette PNG of class ids (start from `semedit segment`'s "
                          "output) or an RGB PNG in the class colours."),
        click.Option(["--source-seg"], type=_IMAGE, default=None,
                     help="The input's own map (default: estimated by the pixel classifiers; toon PNGs: their "
                          "record's)."),
        click.Option(["--set", "changes"], multiple=True, metavar="ATTRIBUTE=VALUE",
                     help="Toon PNGs only, instead of --seg: the edit as attribute changes (repeatable), e.g. --set "
                          "mouth=open; the edited map is the changed record's."),
        click.Option(["--roi", "mask"], type=_IMAGE, default=None,
                     help="Greyscale PNG, white = the ROI (default: the pixels whose class changes, dilated)."),
    ]
    by_layers = [
        click.Option(["--object", "object_prompt"], default=None,
                     help="The target's subject part T_a, e.g. \"a woman, laughing, in a santa costume\" (default: "
                          "the target without its last clause; for --set edits the changed record's subject)."),
        click.Option(["--background", "background_prompt"], default=None,
                     help="The target's background part T_b, e.g. \"on a beach\" (default: the target's last "
                          "clause; for --set edits the changed record's background)."),
        click.Option(["--reference-background"], type=_IMAGE, default=None,
                     help="A picture whose background the edit takes, as closely as it can (§4.2)."),
    ]
    return [
        click.Argument(["image"], type=_IMAGE),
        *(by_map if segmentation else by_text_and_layout),
        *(by_layers if layers else []),
        click.Option(["--model"], default="toon-64", show_default=True,
                     help="toon-64, a diffusers SD folder or a hub id."),
        click.Option(["--seed"], type=click.IntRange(0), default=0, show_default=True),
        click.Option(["-o", "--output"], type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="PNG file to write (a .json sidecar goes next to it)."),
        click.Option(["--overwrite"], is_flag=True, help="Replace existing outputs."),
        click.Option(["--save-intermediates"], is_flag=True,
                     help="Also write the mask and intermediates next to the output."),
    ]


def config_options(cls, family_defaults: dict | None = None) -> list[click.Option]:
    """One option per config field (bool: --x/--no-x), its default the paper's, its help the field's and, where
    the embedded toon-64 family has a default of its own (`family_defaults`), that one."""
    from ..methods.base import plain_type

    hints, opts = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        t, flag, meta = plain_type(hints[f.name]), "--" + f.name.replace("_", "-"), f.metadata
        about = meta.get("help")
        if f.name in (family_defaults or {}):
            about = f"{about} [toon-64: {family_defaults[f.name]}, measured on it; the default shown is the paper's]"
        if t is bool:
            opts.append(click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=f.default, show_default=True,
                                     help=about))
        elif t in (int, float, str):
            kind = t
            if meta.get("choices"):
                kind = click.Choice(meta["choices"])
            elif t is not str and (meta.get("lo") is not None or meta.get("hi") is not None):
                kind = (click.IntRange if t is int else click.FloatRange)(
                    meta.get("lo"), meta.get("hi"), min_open=meta.get("lo_open", False),
                    max_open=meta.get("hi_open", False))
            opts.append(click.Option([flag, f.name], type=kind, default=f.default, show_default=True,
                                     help=about))
    return opts


def _method_help(method) -> str:
    """A method's help: its module docstring's first paragraph, then its edit function's own."""
    import inspect
    import sys

    about = (sys.modules[method.edit.__module__].__doc__ or "").strip().split("\n\n")[0]
    return f"{about}\n\n{inspect.cleandoc(method.edit.__doc__ or '')}".strip()


def edit_command(name: str, method) -> click.Command:
    from ..models.backbone import read_method_defaults
    from ..models.toon64 import TOON64_DIR

    shared = _edit_params(method.segmentation, method.layers)
    settings = config_options(method.config, read_method_defaults(TOON64_DIR).get(name))
    clash = {p.name for p in shared} & {p.name for p in settings}
    if clash:
        raise RuntimeError(f"{name}'s config fields clash with edit options: {clash}")
    doc = _method_help(method)
    shared_names = {p.name for p in shared}

    def callback(**kw):
        ctx = click.get_current_context()  # settings left at their defaults take the model family's own
        given = {k: v for k, v in kw.items() if k not in shared_names
                 and ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
        run_edit_command(name, {k: v for k, v in kw.items() if k in shared_names}, given)

    return click.Command(name, callback=callback, params=shared + settings, help=doc,
                         short_help=doc.split("\n")[0][:80] if doc else None)


def run_edit_command(name: str, kw: dict, settings: dict) -> None:
    """Check everything, load the model, run the method with a progress bar, save the result."""
    from tqdm import tqdm

    from ..methods import make_config
    from ..service import (EditInputs, check_new_files, check_png_path, get_backbone, parse_changes, parse_named,
                           prepare_edit, result_paths, run_prepared_edit, save_result)

    output: Path = kw["output"]
    with user_errors():  # every check before any model loads
        check_new_files(result_paths(check_png_path(output)), kw["overwrite"])
        make_config(name, **settings)  # bad settings fail before any model loads
        controls = {**{k: kw[k] for k in ("pose", "scribble") if kw.get(k)},
                    **parse_named(kw.get("control", ()), "--control")}
        source_controls = {**{k: kw[f"source_{k}"] for k in ("pose", "scribble") if kw.get(f"source_{k}")},
                           **parse_named(kw.get("source_control", ()), "--source-control")}
        layout = kw.get("layout_from_set", "none")
        prepared = prepare_edit(EditInputs(
            image=kw["image"], target=kw.get("target"), source=kw.get("source"), changes=parse_changes(kw["changes"]),
            layout_from_changes=None if layout == "none" else layout, mask=kw["mask"], controls=controls,
            source_controls=source_controls, seg=kw.get("seg"), source_seg=kw.get("source_seg"),
            object_prompt=kw.get("object_prompt"), background_prompt=kw.get("background_prompt"),
            reference_background=kw.get("reference_background")),
            kw["model"], name)  # pictures read before the model
        controlnets = parse_named(kw.get("controlnet", ()), "--controlnet", must_exist=False)
        prepared.request(get_backbone(kw["model"], controlnets), name)  # all the method checks, before it runs
    for note in prepared.notes:
        click.echo(f"note: {note}", err=True)
    bar = tqdm(desc=name, unit="U-Net call")

    def progress(calls):  # one bar a phase of the method: its U-Net calls
        if bar.desc != f"{name}: {calls.phase}":
            if bar.n:
                bar.n = bar.total or bar.n
                bar.refresh()
            bar.reset(total=calls.phase_steps)
            bar.set_description(f"{name}: {calls.phase}")
        bar.n = calls.phase_calls
        bar.refresh()

    try:
        with user_errors():
            result = run_prepared_edit(prepared, name, settings, kw["model"], controlnets, kw["seed"], progress)
        bar.n = bar.total or bar.n
    finally:
        bar.close()
    with user_errors():
        files = save_result(result, output, kw["save_intermediates"], overwrite=kw["overwrite"])
    click.echo(f"wrote {', '.join(str(f) for f in files)} ({result.unet_evaluations} U-Net evaluations, "
               f"{result.provenance['seconds']:.1f} s)")


class EditGroup(click.Group):
    """One subcommand per registered method, built on demand (importing the methods loads torch)."""

    def list_commands(self, ctx):
        from ..methods import REGISTRY

        return sorted(REGISTRY)

    def get_command(self, ctx, name):
        from ..methods import REGISTRY

        return edit_command(name, REGISTRY[name]) if name in REGISTRY else None


@click.group(cls=EditGroup)
def edit():
    """Edit an image with a method (`semedit edit METHOD --help` lists its settings, defaults from its paper).

    Example: semedit edit diffedit toon.png -t "a cartoon woman with red hair" -o out.png
    """

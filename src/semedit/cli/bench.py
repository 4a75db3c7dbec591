"""`semedit bench`: the toon benchmark."""

from __future__ import annotations

from pathlib import Path

import click


def _parse_method_settings(items, methods) -> dict:
    """--config METHOD.FIELD=VALUE items as {method: {field: value}}, values typed by the config field (and
    checked against it; the model family's defaults apply to the fields not given)."""
    from ..methods import make_config
    from ..methods.base import parse_setting

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
        for m, c in changes.items():
            make_config(m, **c)
        return changes
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--config'") from None


@click.command()
@click.option("--methods", default="sdedit,diffedit", show_default=True, help="Comma-separated method names.")
@click.option("--tasks", "kinds", default="all", show_default=True,
              help="Comma-separated task kinds (expression, hair, glasses, costume, background, eyes, mouth, pose, "
                   "scribble, map-mouth, map-eyes, map-hair, map-glasses, map-beard), groups of them (text, layout, "
                   "map) or all.")
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
@click.option("--fast", is_flag=True, help="Run the networks compiled, in bfloat16 where the device has it "
              "natively (models.fast): faster once each call shape has compiled (up to a minute each); outputs "
              "differ from the default's within bf16's tolerance (docs/benchmark.md, Speed).")
def bench(methods, kinds, count, model, evaluator, settings, seed, out, overwrite, rejudge, lpips_weights,
          inception_weights, arcface_weights, fast):
    """The toon benchmark: every method on the same seeded edit tasks, judged by the evaluator (and by the
    papers' LPIPS, FID and ArcFace where their weights are given)."""
    from tqdm import tqdm

    from ..eval.bench import KIND_GROUPS, TASK_KINDS, check_kept_run, rejudge as rejudge_run, run_benchmark
    from ..eval.paper_nets import PaperNets
    from ..methods import REGISTRY
    from ..models.backbone import BackboneNotFound, load_backbone, load_evaluator

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
    kinds = list(TASK_KINDS) if kinds == "all" else [
        kind for k in kinds.split(",") if k.strip() for kind in KIND_GROUPS.get(k.strip(), [k.strip()])]
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
    if fast:
        from ..models.fast import fast_backbone

        bb = fast_backbone(bb)
    bar = tqdm(total=len(names) * len(kinds) * count, desc="bench", unit="edit")
    report = run_benchmark(bb, ev, names, kinds, count, out, seed, configs, overwrite,
                           progress=lambda row: bar.update(1), paper_nets=nets)
    bar.close()
    click.echo((out / "table.md").read_text())
    click.echo(f"wrote {out}/results.json, table.md, grid.png ({report['wall_seconds']:.0f} s)")

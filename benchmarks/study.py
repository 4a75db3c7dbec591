"""What the method studies share: rows (a method with settings) run on the same benchmark tasks and seeds, kept in
OUT (rows.json, outputs.npz) so that a stopped study resumes, and per-kind markdown tables with the mean and
standard error of each metric, the Fréchet distance of the evaluator's features to real renders, and seconds per
edit, also in units of one text-to-image run measured in the same process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semedit.eval.bench import make_tasks, reference_images, run_method, score
from semedit.eval.metrics import frechet_distance
from semedit.methods import config_for
from semedit.models.backbone import load_backbone, load_evaluator


def mean_se(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def run_rows(out: Path, rows_def: dict, labels, tasks, backbone, evaluator) -> tuple[dict, dict]:
    """Run each labelled row (method, settings) not yet kept in `out` on `tasks`, score it, keep it; returns the
    kept rows ({label: rows}, with "_unit_seconds") and outputs ({label/kind/index: image})."""
    from layered_study import reference_unit

    out.mkdir(parents=True, exist_ok=True)
    rows_file, outputs_file = out / "rows.json", out / "outputs.npz"
    kept = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    outputs = dict(np.load(outputs_file)) if outputs_file.exists() else {}
    kept["_unit_seconds"] = kept.get("_unit_seconds") or reference_unit(backbone)
    for label in labels:
        if label in kept:
            continue
        method, settings = rows_def[label]
        rows = run_method(method, backbone, tasks, config_for(method, backbone, **settings),
                          progress=lambda r: print(f"{label}: {r['kind']} {r['index']}", flush=True))
        score(rows, tasks, evaluator)
        for r in rows:
            outputs[f"{label}/{r['kind']}/{r['index']}"] = r.pop("output")
        kept[label] = rows
        np.savez_compressed(outputs_file, **outputs)
        rows_file.write_text(json.dumps(kept, indent=1, default=float))
        print(label, "done", flush=True)
    return kept, outputs


def run_study(args, rows_def: dict, kinds):
    """The rows `args.rows` names (default: all) on `args.n` tasks per kind (seed 0) on toon-64, kept in `args.out`:
    (evaluator, tasks, kept rows, outputs, the evaluator's features of the real renders Fréchet distances use)."""
    labels = [label.strip() for label in args.rows.split(",")] if args.rows else list(rows_def)
    if unknown := [label for label in labels if label not in rows_def]:
        raise SystemExit(f"unknown rows {unknown}; the rows are: {', '.join(rows_def)}")
    bb, ev = load_backbone("toon-64"), load_evaluator()
    tasks = make_tasks(kinds, args.n, seed=0)
    kept, outputs = run_rows(Path(args.out), rows_def, labels, tasks, bb, ev)
    return ev, tasks, kept, outputs, ev.features_of(reference_images())


def header(n: int, unit: float, floor: str = "") -> str:
    return (f"n = {n} tasks per kind (seed 0); mean ± standard error; Fréchet distance of the evaluator's features to "
            f"1,000 real renders{floor}; time also in units of one text-to-image run (50 steps, CFG 7.5: {unit:.2f} s "
            "here)\n")


def kind_table(kept: dict, outputs: dict, kind: str | None, evaluator, reference: np.ndarray,
               metrics: list[tuple[str, str]]) -> list[str]:
    """The markdown table of one task kind (None: all of them): a row per kept label, the `metrics` (key, header) as
    mean ± standard error, then Fréchet distance, seconds per edit and units."""
    unit = kept["_unit_seconds"]
    lines = ["| | " + " | ".join(h for _, h in metrics) + " | Fréchet ↓ | s / edit | units |",
             "|---" * (len(metrics) + 4) + "|"]
    for label, rows in kept.items():
        if label.startswith("_"):
            continue
        rs = [r for r in rows if kind in (None, r["kind"]) and "edit_success" in r]
        if not rs:
            continue
        images = np.stack([outputs[f"{label}/{r['kind']}/{r['index']}"] for r in rs])
        fd = frechet_distance(evaluator.features_of(images), reference)
        sec = np.mean([r["seconds"] for r in rs])
        cells = [mean_se([r[m] for r in rs]) for m, _ in metrics]
        lines.append(f"| {label} | {' | '.join(cells)} | {fd:.1f} | {sec:.3f} | {sec / unit:.3f} |")
    return lines

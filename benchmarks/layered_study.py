"""LayerDiffusion on the toon benchmark's compound tasks: the ablations of the paper's Table 1 / Fig. 5 as a table,
the cost of one edit split by phase, and a picture grid like the paper's Fig. 4 (input, O_t, the masks, each
method's output, the ground truth).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layered_study.py ablations --n 5 --out out/layered
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layered_study.py cost --out out/layered
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/layered_study.py grid --bench out/bench_compound --out docs/layered

Every variant runs on the same tasks and seeds (the benchmark's, seed 0); rates come with n and their
standard error. Results are kept per variant in OUT/ablations.json, so a stopped run resumes where it was.
Times are also given in units of one text-to-image run (50 DDIM steps, CFG 7.5) measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from semedit.eval.bench import KIND_GROUPS, PeakMemory, make_tasks, run_method, score, task_request
from semedit.methods import config_for, run_edit
from semedit.models.backbone import load_backbone, load_evaluator

# The paper's Table 1 (letters as there) and the choices semedit adds (LoRA, the other reading of L_obj).
VARIANTS = {
    "(f) full": {},
    "(a) w/o L_obj": {"lambda_obj": 0.0},
    "(b) w/o L_bg": {"lambda_bg": 0.0},
    "(c) lambda_1 = 1": {"lambda_obj": 1.0},
    "(d) lambda_1 = 3": {"lambda_obj": 3.0},
    "(e) lambda_1 = 1, lambda_2 = 3": {"lambda_obj": 1.0, "lambda_bg": 3.0},
    "(g) w/o layered optimisation": {"layered_optimisation": False},
    "(h) w/o fine-tuning": {"finetune_steps": 0},
    "(i) w/o iterative guidance": {"iterative_guidance": False},
    "(j) alpha = 1": {"alpha": 1.0},
    "(k) alpha = 0": {"alpha": 0.0},
    "alpha = 0.7 (the paper's)": {"alpha": 0.7},
    "LoRA rank 4": {"lora_rank": 4, "finetune_lr": 1e-3},
    "L_obj on O_t inside M_t (the paper's letters)": {"l_obj_image": "target"},
}
METRICS = ("edit_success", "subject_success", "background_success", "identity_agreement", "clip_score", "gt_mae",
           "seconds")


def mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def reference_unit(backbone) -> float:
    """Seconds of one text-to-image run (50 DDIM steps, CFG 7.5): the unit times are also given in."""
    from semedit.engine.generate import generate

    generate(backbone, "a cartoon woman", steps=2)  # warm-up
    t0 = time.perf_counter()
    generate(backbone, "a cartoon woman", seed=0)
    return time.perf_counter() - t0


def ablations(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "ablations.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    bb, ev = load_backbone("toon-64"), load_evaluator()
    all_tasks = make_tasks(KIND_GROUPS["compound"], args.n, seed=0)
    unit = reference_unit(bb)
    for name in args.variants or VARIANTS:
        if name in done:
            continue
        config = config_for("layered", bb, **VARIANTS[name])
        # L_obj on O_t needs O_t, which a reference background replaces: that row skips the reference tasks
        tasks = [t for t in all_tasks if config.l_obj_image == "input" or t.reference_image is None]
        rows = run_method("layered", bb, tasks, config,
                          progress=lambda r: print(f"{name}: {r['kind']} {r['index']}", flush=True))
        score(rows, tasks, ev, bb.clip, bb.clip_processor)
        done[name] = {"n": len(rows), "settings": VARIANTS[name], "unit_seconds": unit,
                      **{m: mean_se([r[m] for r in rows]) for m in METRICS}}
        store.write_text(json.dumps(done, indent=2))
        print(name, {m: round(done[name][m][0], 3) for m in METRICS}, flush=True)
    lines = [f"n = {len(all_tasks)} compound tasks ({', '.join(KIND_GROUPS['compound'])}, {args.n} each, seed 0); "
             "mean ± standard error; time also in units of one text-to-image run (50 steps, CFG 7.5)\n",
             "| setting | success ↑ | subject ✓ ↑ | background ✓ ↑ | identity ↑ | CLIP ↑ | MAE gt ↓ | s / edit "
             "| units |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in done.items():
        cells = [f"{r[m][0]:.2f} ± {r[m][1]:.2f}" for m in METRICS[:4]]
        cells += [f"{r['clip_score'][0]:.1f} ± {r['clip_score'][1]:.1f}", f"{r['gt_mae'][0]:.3f}",
                  f"{r['seconds'][0]:.1f}", f"{r['seconds'][0] / r['unit_seconds']:.1f}"]
        label = name if r["n"] == len(all_tasks) else f"{name} (n = {r['n']})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (out / "ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cost(args):
    """Seconds per edit split by phase, and peak memory, for the full fine-tune and LoRA (one task each)."""
    bb = load_backbone("toon-64")
    task = make_tasks(["compound-costume"], 1, seed=0)[0]
    request = task_request(task, bb.image_size, "layered")
    unit = reference_unit(bb)
    lines = [f"one text-to-image run (the unit): {unit:.2f} s\n",
             "| fine-tuning | phase | s | share |", "|---|---|---|---|"]
    for label, settings in (("whole U-Net", {}), ("LoRA rank 4", VARIANTS["LoRA rank 4"])):
        marks = []  # (phase, time of its first U-Net call)
        mem = PeakMemory(bb.device)
        mem.reset()
        t0 = time.perf_counter()
        result = run_edit("layered", bb, request, config_for("layered", bb, **settings), seed=task.seed,
                          before_unet=lambda calls: marks.append((calls.phase, time.perf_counter()))
                          if not marks or marks[-1][0] != calls.phase else None)
        total = time.perf_counter() - t0
        ends = [t for _, t in marks[1:]] + [t0 + total]
        for (phase, start), end in zip(marks, ends):
            lines.append(f"| {label} | {phase} | {end - start:.1f} | {(end - start) / total:.0%} |")
        lines.append(f"| {label} | **total** ({result.unet_evaluations} U-Net evaluations, peak "
                     f"{mem.peak_mib():.0f} MiB) | **{total:.1f}** ({total / unit:.1f} units) | |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def grid(args):
    """Fig. 4 of the paper on two tasks of each compound kind: input, O_t, M_r, M_t, each method's output
    kept by a benchmark run (`--bench`), the ground truth."""
    from semedit.world.sheets import grid as grid_of, labelled, zoom_nearest

    bench = Path(args.bench)
    report = json.loads((bench / "results.json").read_text())
    outputs = np.load(bench / "outputs.npz")
    bb = load_backbone("toon-64")
    methods = report["methods"]
    cells, left = [], []
    for task in make_tasks(KIND_GROUPS["compound"], 2, seed=report["seed"]):
        result = run_edit("layered", bb, task_request(task, bb.image_size, "layered"), seed=task.seed)
        grey = [np.repeat((result.intermediates[k] * 255).astype(np.uint8)[..., None], 3, 2)
                for k in ("subject_input", "subject_background")]
        row = [task.edit.source_render.image, result.intermediates["background_image"], *grey]
        row += [outputs[f"{m}/{task.kind}/{task.index}"] for m in methods]
        cells.append(row + [task.edit.target_render.image])
        left.append(f"{task.kind[9:]}: {task.target_value}, {task.edit.target.background}")
    img = labelled(zoom_nearest(grid_of(cells), 2), left,
                   ["input", "O_t / ref.", "M_r", "M_t", *methods, "ground truth"], 132, 4)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    img.save(Path(args.out) / "grid.png")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("ablations", "cost", "grid"))
    p.add_argument("--n", type=int, default=5, help="tasks per compound kind")
    p.add_argument("--variants", nargs="*", help=f"some of: {', '.join(VARIANTS)}")
    p.add_argument("--bench", help="a benchmark run's folder (grid: the other methods' outputs)")
    p.add_argument("--out", default="out/layered")
    a = p.parse_args()
    {"ablations": ablations, "cost": cost, "grid": grid}[a.what](a)

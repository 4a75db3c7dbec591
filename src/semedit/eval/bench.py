"""The toon benchmark (DESIGN.md, "Evaluation"): fixed, seeded edit tasks on world renders (real
images, not model samples), every method run on the same tasks, judged by the attribute evaluator
and pixel metrics against the ground-truth edit.

A task is a `GroundTruthEdit` (source and target renders, true edit region) plus what a method is
given: prompts for text tasks, ControlNet maps for layout tasks (pose, scribble). Inputs are
rendered at 64 px and resized to the model's size; outputs are resized back to 64 px for scoring,
so the same tasks judge toon-64 and real Stable Diffusion weights. A run keeps its outputs, so a
better judge can score them again (`rejudge`) without running any method.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.evaluator import segmentation_accuracy
from ..world import (CATEGORICAL, CAPTION_FIELDS, GroundTruthEdit, colourise_seg, describe, ground_truth_edit,
                     identity_agreement, layer_captions, layout_map, observable, render, resize_square, sample_record)
from ..world.edits import PAIR_DIRECTIONS
from ..files import check_new_files, write_together
from .metrics import frechet_distance, mae, psnr, ssim
from .paper_nets import PaperNets, arcface_similarity, inception_features, lpips_distance

TASK_SIZE = 64


@dataclass(frozen=True)
class TaskKind:
    attribute: str  # the attribute the edit changes (and the evaluator judges)
    condition: str  # "text", "pose", "scribble" or "map" (an edited segmentation map): what tells the method the edit
    caption_field: str | None  # the caption field naming the attribute (dropped from layout tasks' prompts)
    also: str | None = None  # a second attribute changed at once (compound tasks: the background)
    reference: bool = False  # the method may also take a picture of the target background (layered methods)
    # paired-direction tasks (the MCDM paper's §4): the source shows `source_value`, the target one of `targets`
    source_value: str | None = None
    targets: tuple | None = None


TASK_KINDS: dict[str, TaskKind] = {
    "expression": TaskKind("expression", "text", "expression"),
    "hair": TaskKind("hair_colour", "text", "hair"),
    "glasses": TaskKind("glasses", "text", "glasses"),
    "costume": TaskKind("costume", "text", "costume"),
    "background": TaskKind("background", "text", "background"),
    "eyes": TaskKind("eyes", "text", "eyes"),
    "mouth": TaskKind("mouth", "text", "mouth"),
    "pose": TaskKind("head_x", "pose", None),  # the head moves 4 px sideways
    "scribble": TaskKind("hair_style", "scribble", "hair"),  # a new hair outline
    # map edits (the pixel-guidance paper §4.2): the ground-truth edit changes the segmentation locally
    "map-mouth": TaskKind("mouth", "map", "mouth"),
    "map-eyes": TaskKind("eyes", "map", "eyes"),
    "map-hair": TaskKind("hair_style", "map", "hair"),
    "map-glasses": TaskKind("glasses", "map", "glasses"),
    "map-beard": TaskKind("beard", "map", "beard"),
    # compound edits (the LayerDiffusion paper): the subject and the background change at once
    "compound-costume": TaskKind("costume", "text", "costume", also="background"),
    "compound-expression": TaskKind("expression", "text", "expression", also="background"),
    "compound-hair": TaskKind("hair_colour", "text", "hair", also="background"),
    "compound-reference": TaskKind("costume", "text", "costume", also="background", reference=True),
    # the MCDM paper's two tasks, four directions each (§4 "Datasets"): normal costume / neutral expression to
    # one of the targets its model is trained for
    **{f"pair-{a}": TaskKind(a, "text", a, source_value=source, targets=targets)
       for a, (source, targets) in PAIR_DIRECTIONS.items()},
}
KIND_GROUPS = {group: [k for k, v in TASK_KINDS.items() if v.also is None and v.source_value is None and (
                       (v.condition == group) or (group == "layout" and v.condition in ("pose", "scribble")))]
               for group in ("text", "layout", "map")}
KIND_GROUPS["compound"] = [k for k, v in TASK_KINDS.items() if v.also is not None]
KIND_GROUPS["pairs"] = [k for k, v in TASK_KINDS.items() if v.source_value is not None]
# How a method that takes no map is told a map edit (the paper's comparisons, §4.2 / supp. B.5): SDEdit in
# stroke mode (the edited map painted into the input), ControlNet-only by the edited scribble, every other
# method by the target prompt.
MAP_BASELINE_INPUT = {"sdedit": "strokes", "controlnet": "scribble"}
PSNR_CAP = 100.0  # dB, for pixels kept exactly (PSNR is infinite there)
POSE_SHIFT = 4.0  # px of head_x change in pose tasks
POSE_SUCCESS_PX = 2.0  # a pose edit succeeds when the evaluator puts the head within this of the target
JUDGEMENT_FILES = ("results.json", "table.md", "grid.png")  # what `judge` writes
OUTPUTS_FILE = "outputs.npz"  # every output of a run, kept for `rejudge`
REFERENCE_SIZE = 1000  # real renders in the Fréchet reference set


@dataclass
class BenchTask:
    kind: str
    index: int
    seed: int
    edit: GroundTruthEdit
    source_prompt: str
    target_prompt: str
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    source_controls: dict[str, np.ndarray] = field(default_factory=dict)
    reference_image: np.ndarray | None = None  # compound-reference: another person in the target background

    @property
    def attribute(self) -> str:
        return TASK_KINDS[self.kind].attribute

    @property
    def target_value(self):
        return getattr(self.edit.target, self.attribute)


def make_task(kind: str, index: int, seed: int = 0) -> BenchTask:
    """Task `index` of `kind`: deterministic from (seed, kind, index); sources are redrawn until the
    judged attribute is visible before and after the edit."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(TASK_KINDS)}")
    tk = TASK_KINDS[kind]
    ss = np.random.SeedSequence([seed, list(TASK_KINDS).index(kind), index])
    rng = np.random.default_rng(ss)
    for _ in range(1000):
        rec_seed = int(rng.integers(2**31))
        src = sample_record(rec_seed)
        if tk.source_value is not None:
            src = src.replace(**{tk.attribute: tk.source_value})
        if tk.attribute == "head_x":
            change = {"head_x": round(src.head_x - POSE_SHIFT if src.head_x >= 0 else src.head_x + POSE_SHIFT, 2)}
        else:
            values = [v for v in (tk.targets or CATEGORICAL[tk.attribute]) if v != getattr(src, tk.attribute)]
            change = {tk.attribute: values[int(rng.integers(len(values)))]}
        if tk.also is not None:
            values = [v for v in CATEGORICAL[tk.also] if v != getattr(src, tk.also)]
            change[tk.also] = values[int(rng.integers(len(values)))]
        try:
            e = ground_truth_edit(src, TASK_SIZE, **change)
        except ValueError:  # e.g. a beard on a woman
            continue
        judged = [a for a in (tk.attribute, tk.also) if a not in (None, "head_x")]
        if not all(observable(src)[a] and observable(e.target)[a] for a in judged):
            continue
        if tk.condition == "map" and np.array_equal(e.source_render.seg, e.target_render.seg):
            continue  # the change shows in no pixel's class
        break
    else:  # pragma: no cover - the world always has visible cases
        raise RuntimeError(f"no visible {kind} edit found")
    if tk.condition == "text":
        sp, tp, controls, source_controls = describe(src), describe(e.target), {}, {}
    elif tk.condition == "map":  # the scribble for the ControlNet-only baseline
        sp, tp = describe(src), describe(e.target)
        controls = {"scribble": layout_map(e.target_render, "scribble")}
        source_controls = {"scribble": layout_map(e.source_render, "scribble")}
    else:  # layout edits keep the text, which does not name the changed attribute
        fields = [f for f in CAPTION_FIELDS if f != tk.caption_field]
        sp = tp = describe(src, fields)
        controls = {tk.condition: layout_map(e.target_render, tk.condition)}
        source_controls = {tk.condition: layout_map(e.source_render, tk.condition)}
    reference = None
    if tk.reference:  # someone else, in the same scene as the ground truth
        other = sample_record(int(rng.integers(2**31))).replace(background=e.target.background,
                                                                 scene_seed=e.target.scene_seed)
        reference = render(other, TASK_SIZE).image
    return BenchTask(kind, index, int(ss.generate_state(1)[0]), e, sp, tp, controls, source_controls, reference)


def make_tasks(kinds, n: int, seed: int = 0) -> list[BenchTask]:
    return [make_task(k, i, seed) for k in kinds for i in range(n)]


class PeakMemory:
    """Peak resident memory (CPU, Linux: reset through /proc/self/clear_refs) or peak CUDA memory, in MiB."""

    def __init__(self, device):
        self.cuda = getattr(device, "type", str(device)) == "cuda"

    def reset(self):
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def peak_mib(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def roi_of(task: BenchTask) -> np.ndarray:
    """A map task's ROI m, as the pixelguide method makes it: the pixels whose class changes, dilated by the
    paper's buffer scaled to the task's size (the pixel-guidance paper, Eq. 7)."""
    from ..methods.pixelguide import edit_region, scaled_dilation

    return edit_region(task.edit.source_render.seg, task.edit.target_render.seg, scaled_dilation(TASK_SIZE))[1]


def stroke_image(task: BenchTask) -> np.ndarray:
    """SDEdit's stroke input (the pixel-guidance paper §4.2): the input with every pixel whose class changes
    painted in that class's mean colour in the input (in the ground truth, for a class the input lacks:
    the colour a user would paint it)."""
    src, tgt = task.edit.source_render, task.edit.target_render
    out = src.image.copy()
    changed = src.seg != tgt.seg
    for c in np.unique(tgt.seg[changed]):
        where = src.seg == c if (src.seg == c).any() else tgt.seg == c
        colour = (src.image if (src.seg == c).any() else tgt.image)[where].mean(0)
        out[changed & (tgt.seg == c)] = np.round(colour).astype(np.uint8)
    return out


def task_request(task: BenchTask, size: int, method: str | None = None):
    """The EditRequest a method gets for a task, at the model's image size (map tasks: see
    MAP_BASELINE_INPUT)."""
    from ..methods import REGISTRY, EditRequest

    image = task.edit.source_render.image
    controls, source_controls = task.controls, task.source_controls
    if TASK_KINDS[task.kind].condition == "map":
        if method is not None and REGISTRY[method].segmentation:
            return EditRequest(image=resize_square(image, size), target_prompt="", source_prompt="",
                               edited_seg=resize_square(task.edit.target_render.seg, size, nearest=True),
                               source_seg=resize_square(task.edit.source_render.seg, size, nearest=True))
        given = MAP_BASELINE_INPUT.get(method)
        if given == "strokes":
            image = stroke_image(task)
        if given != "scribble":
            controls, source_controls = {}, {}
    layers = {}
    if method is not None and REGISTRY[method].layers:
        object_prompt, background_prompt = layer_captions(task.edit.target)
        layers = dict(object_prompt=object_prompt, background_prompt=background_prompt, reference_image=None
                      if task.reference_image is None else resize_square(task.reference_image, size))
    return EditRequest(image=resize_square(image, size), target_prompt=task.target_prompt,
                       source_prompt=task.source_prompt,
                       controls={k: resize_square(v, size) for k, v in controls.items()},
                       source_controls={k: resize_square(v, size) for k, v in source_controls.items()}, **layers)


def run_method(method: str, backbone, tasks: list[BenchTask], config=None, progress=None) -> list[dict]:
    """Run one method on every task it can take; returns one row per task with the output (64 px)."""
    from ..methods import REGISTRY, run_edit

    rows = []
    mem = PeakMemory(backbone.device)
    size = backbone.image_size
    for task in tasks:
        row = {"method": method, "kind": task.kind, "index": task.index}
        if progress is not None:
            progress(row)
        condition = TASK_KINDS[task.kind].condition
        if condition in ("pose", "scribble") and not REGISTRY[method].layout:
            rows.append({**row, "skipped": "text-only method"})
            continue
        if REGISTRY[method].segmentation and condition != "map":
            rows.append({**row, "skipped": "edits by segmentation map only"})
            continue
        if any(k not in backbone.controlnets for k in task.controls):
            rows.append({**row, "skipped": f"model has no {', '.join(task.controls)} ControlNet"})
            continue
        mem.reset()
        result = run_edit(method, backbone, task_request(task, size, method), config, seed=task.seed)
        rows.append({**row, "output": resize_square(result.image, TASK_SIZE),
                     "unet_evaluations": result.unet_evaluations, "seconds": result.provenance["seconds"],
                     "peak_memory_mib": round(mem.peak_mib(), 1)})
    return rows


def score(rows: list[dict], tasks: list[BenchTask], evaluator, clip=None, clip_processor=None,
          paper_nets: PaperNets | None = None) -> None:
    """Add the per-task metrics to each row in place (rows and tasks in the same order)."""
    done = [(r, t) for r, t in zip(rows, tasks) if "output" in r]
    if not done:
        return
    outs = np.stack([r["output"] for r, _ in done])
    sources = np.stack([t.edit.source_render.image for _, t in done])
    preds = evaluator.predict(outs)
    segs = evaluator.segment(outs)
    if clip is not None:
        from .clip_metrics import clip_score, directional_similarity

        cs = clip_score(clip, clip_processor, outs, [t.target_prompt for _, t in done])
        ds = directional_similarity(clip, clip_processor, sources, outs, [describe(t.edit.source) for _, t in done],
                                    [describe(t.edit.target) for _, t in done])
    nets = paper_nets or PaperNets()
    by_net = {}  # the papers' own metrics, where the user gave their networks
    if nets.lpips is not None:
        by_net["lpips_source"] = lpips_distance(nets.lpips, outs, sources)
        by_net["lpips_gt"] = lpips_distance(nets.lpips, outs, np.stack([t.edit.target_render.image for _, t in done]))
    if nets.arcface is not None:
        by_net["arcface_identity"] = arcface_similarity(nets.arcface, sources, outs)
    for i, (r, t) in enumerate(done):
        e, out, p = t.edit, r["output"], preds[i]
        outside = ~e.region
        r["preservation_mae"] = mae(out, e.source_render.image, outside)
        r["preservation_psnr"] = psnr(out, e.source_render.image, outside)
        r["preservation_ssim"] = ssim(out, e.source_render.image, outside)
        r["gt_mae"] = mae(out, e.target_render.image)
        r["gt_ssim"] = ssim(out, e.target_render.image)
        if t.attribute == "head_x":
            r["edit_success"] = float(abs(p["head_x"] - t.target_value) < POSE_SUCCESS_PX)
        else:
            r["edit_success"] = float(p[t.attribute] == t.target_value)
        if (also := TASK_KINDS[t.kind].also) is not None:  # compound: both changes must succeed
            r["subject_success"] = r["edit_success"]
            r["background_success"] = float(p[also] == getattr(e.target, also))
            r["edit_success"] = r["subject_success"] * r["background_success"]
        r["segmentation_accuracy_in_region"] = segmentation_accuracy(segs[i], e.target_render.seg, e.region)
        if TASK_KINDS[t.kind].condition == "map":  # the paper's Table 2: outside and inside its ROI m
            m = roi_of(t)
            r["roi_mae"] = mae(out, e.source_render.image, ~m)
            r["roi_psnr"] = min(psnr(out, e.source_render.image, ~m), PSNR_CAP)
            r["roi_segmentation_accuracy"] = segmentation_accuracy(segs[i], e.target_render.seg, m)
        r["identity_agreement"] = identity_agreement(p, e.target)
        if clip is not None:
            r["clip_score"] = float(cs[i])
            r["clip_directional"] = float(ds[i])
        r.update({k: float(v[i]) for k, v in by_net.items()})


PAPER_NET_METRICS = ("lpips_source", "lpips_gt", "arcface_identity")  # only with the user's networks
METRICS = ("preservation_mae", "preservation_psnr", "preservation_ssim", "edit_success", "subject_success",
           "background_success",
           "segmentation_accuracy_in_region", "roi_mae", "roi_psnr", "roi_segmentation_accuracy", "gt_mae", "gt_ssim",
           "identity_agreement", "clip_score", "clip_directional", *PAPER_NET_METRICS, "unet_evaluations", "seconds",
           "peak_memory_mib")


def summarise(rows: list[dict]) -> dict:
    """Mean of every metric per (method, kind) and per method over all its tasks."""
    out: dict = {}
    for r in rows:
        if "output" not in r:
            continue
        for key in (r["kind"], "all"):
            out.setdefault(r["method"], {}).setdefault(key, []).append(r)
    summary = {}
    for m, kinds in out.items():
        summary[m] = {}
        for k, rs in kinds.items():
            s = {"n": len(rs)}
            for metric in METRICS:
                vals = [r[metric] for r in rs if metric in r and np.isfinite(r[metric])]
                if vals:
                    s[metric] = float(np.mean(vals))
            summary[m][k] = s
    return summary


def reference_images(n: int = REFERENCE_SIZE, seed: int = 7_000_000) -> np.ndarray:
    """n real renders: the Fréchet reference set (a copy; rendered once per process)."""
    return _rendered(n, seed).copy()


@functools.lru_cache(maxsize=2)
def _rendered(n: int, seed: int) -> np.ndarray:
    return np.stack([render(sample_record(seed + i)).image for i in range(n)])


def frechet_by_set(rows: list[dict], tasks: list[BenchTask], features, reference: np.ndarray) -> dict[str, float]:
    """Fréchet distance to the reference features for each method's outputs and, as the floor a method can
    reach, for the tasks' ground-truth edits (real renders); `features` maps uint8 images to N x D. A set
    of fewer than two images has no covariance and no distance."""
    sets = {m: [r["output"] for r in rows if r["method"] == m and "output" in r]
            for m in sorted({r["method"] for r in rows})}
    sets["ground_truth"] = [t.edit.target_render.image for t in tasks]
    return {name: frechet_distance(features(np.stack(images)), reference) for name, images in sets.items()
            if len(images) > 1}


def markdown_table(summary: dict, frechet: dict, kinds, fid: dict | None = None,
                   not_computed: str | None = None) -> str:
    cols = [("preservation_mae", "MAE out ↓", "{:.4f}"), ("preservation_psnr", "PSNR out ↑", "{:.1f}"),
            ("preservation_ssim", "SSIM out ↑", "{:.3f}"), ("edit_success", "success ↑", "{:.2f}"),
            ("subject_success", "subject ✓ ↑", "{:.2f}"), ("background_success", "background ✓ ↑", "{:.2f}"),
            ("segmentation_accuracy_in_region", "seg acc in ↑", "{:.2f}"), ("roi_mae", "MAE out m ↓", "{:.4f}"),
            ("roi_psnr", "PSNR out m ↑", "{:.1f}"), ("roi_segmentation_accuracy", "seg acc in m ↑", "{:.2f}"),
            ("gt_mae", "MAE gt ↓", "{:.4f}"),
            ("gt_ssim", "SSIM gt ↑", "{:.3f}"), ("identity_agreement", "identity ↑", "{:.2f}"),
            ("clip_score", "CLIP ↑", "{:.1f}"), ("clip_directional", "CLIP dir ↑", "{:.2f}"),
            ("lpips_source", "LPIPS src ↓", "{:.3f}"), ("lpips_gt", "LPIPS gt ↓", "{:.3f}"),
            ("arcface_identity", "ArcFace ID ↑", "{:.3f}"),
            ("unet_evaluations", "U-Net evals", "{:.0f}"), ("seconds", "s / edit", "{:.2f}"),
            ("peak_memory_mib", "peak MiB", "{:.0f}")]
    computed = {key for by in summary.values() for s in by.values() for key in s}
    cols = [c for c in cols if c[0] not in (*PAPER_NET_METRICS, "roi_mae", "roi_psnr", "roi_segmentation_accuracy",
                                            "subject_success", "background_success") or c[0] in computed]
    lines = []
    for k in [*kinds, "all"]:
        lines += [f"\n**{k}**\n", "| method | n | " + " | ".join(c[1] for c in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for m, by_kind in summary.items():
            if k not in by_kind:
                continue
            s = by_kind[k]
            cells = [fmt.format(s[key]) if key in s else "–" for key, _, fmt in cols]
            lines.append(f"| {m} | {s['n']} | " + " | ".join(cells) + " |")
    lines += [f"\n**Fréchet distance on evaluator features vs {REFERENCE_SIZE:,} real renders** (lower is better)\n",
              "| set | distance |", "|---|---|"] + [f"| {m} | {v:.3f} |" for m, v in frechet.items()]
    too_few = [m for m in [*summary, "ground_truth"] if m not in frechet]
    if too_few:
        lines.append(f"\n_No Fréchet distance for {', '.join(too_few)}: fewer than 2 images._")
    if "roi_psnr" in computed:
        from ..methods.pixelguide import scaled_dilation

        lines.append(f"\n_m: the ROI of a map task (the pixels whose class changes, dilated by "
                     f"{scaled_dilation(TASK_SIZE)} px); "
                     f"PSNR out m is capped at {PSNR_CAP:.0f} dB (pixels kept exactly)._")
    if fid:
        lines += [f"\n**FID (Inception pool3) vs {REFERENCE_SIZE:,} real renders** (lower is better; "
                  "tens of samples make it biased upwards: compare methods, not papers)\n",
                  "| set | FID |", "|---|---|"] + [f"| {m} | {v:.2f} |" for m, v in fid.items()]
    if not_computed:
        lines.append(f"\n_{not_computed}._")
    return "\n".join(lines) + "\n"


def grid(tasks: list[BenchTask], rows: list[dict], methods: list[str], per_kind: int = 2, zoom: int = 2):
    """Input | target condition | ground truth | each method, `per_kind` tasks of every kind, labelled."""
    from ..world.sheets import grid as grid_of, labelled, zoom_nearest

    by = {(r["method"], r["kind"], r["index"]): r for r in rows}
    cells, left = [], []
    blank = np.full((TASK_SIZE, TASK_SIZE, 3), 255, np.uint8)
    for t in tasks:
        if t.index >= per_kind:
            continue
        cond = colourise_seg(t.edit.target_render.seg) if TASK_KINDS[t.kind].condition == "map" else \
            t.reference_image if t.reference_image is not None else next(iter(t.controls.values()), blank)
        row = [t.edit.source_render.image, cond, t.edit.target_render.image]
        row += [by.get((m, t.kind, t.index), {}).get("output", blank) for m in methods]
        cells.append(row)
        also = TASK_KINDS[t.kind].also
        left.append(f"{t.kind} -> {t.target_value}" + (f", {getattr(t.edit.target, also)}" if also else ""))
    img = zoom_nearest(grid_of(cells), zoom)
    return labelled(img, left, ["input", "condition", "ground truth", *methods], (TASK_SIZE + 2) * zoom, 2 * zoom)


def run_benchmark(backbone, evaluator, methods: list[str], kinds, n: int, out_dir, seed: int = 0,
                  configs: dict | None = None, overwrite: bool = False, progress=None,
                  paper_nets: PaperNets | None = None) -> dict:
    """Run `methods` on n tasks of each kind; keep their outputs (outputs.npz) and write the judgement
    (results.json, table.md, grid.png) to out_dir. `configs` maps a method to its config, or to the settings
    that differ from its defaults on the backbone (`config_for`)."""
    out_dir = Path(out_dir)
    files = [out_dir / f for f in (*JUDGEMENT_FILES, OUTPUTS_FILE)]
    if not overwrite and any(f.exists() for f in files):
        raise FileExistsError(f"{out_dir} holds benchmark results; pass overwrite=True (--overwrite) to replace them")
    check_new_files(files, overwrite=True)
    from ..methods import config_for

    tasks = make_tasks(kinds, n, seed)
    given = configs or {}
    configs = {m: given[m] if m in given and not isinstance(given[m], dict) else
               config_for(m, backbone, **given.get(m, {})) for m in methods}
    rows = []
    t0 = time.perf_counter()
    for m in methods:
        rows += run_method(m, backbone, tasks, configs[m], progress)
    meta = {"model": backbone.name, "methods": methods, "kinds": list(kinds), "n": n, "seed": seed,
            "configs": {m: dataclasses.asdict(configs[m]) for m in methods},
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
            **({} if backbone.networks == "eager" else {"networks": backbone.networks})}
    outputs = {_output_key(r): r["output"] for r in rows if "output" in r}

    def keep(path):
        with open(path, "wb") as f:  # a file object: savez would add ".npz" to the temporary name
            np.savez_compressed(f, **outputs)

    return judge(out_dir, meta, tasks, rows, evaluator, backbone.clip, backbone.clip_processor, paper_nets,
                 [(out_dir / OUTPUTS_FILE, keep)])


def _output_key(row: dict) -> str:
    return f"{row['method']}/{row['kind']}/{row['index']}"


def judge(out_dir, meta: dict, tasks: list[BenchTask], rows: list[dict], evaluator, clip=None,
          clip_processor=None, paper_nets: PaperNets | None = None, more_files=()) -> dict:
    """Score every method's rows (each in task order), then write results.json, table.md and grid.png
    (with `more_files`, (path, write) pairs: all or none). The papers' LPIPS, FID and ArcFace figures are
    computed for the networks in `paper_nets`; the report names those it could not compute."""
    out_dir = Path(out_dir)
    nets = paper_nets or PaperNets()
    for m in meta["methods"]:
        score([r for r in rows if r["method"] == m], tasks, evaluator, clip, clip_processor, nets)
    real = reference_images()
    frechet = frechet_by_set(rows, tasks, evaluator.features_of, evaluator.features_of(real))
    fid = {}
    if nets.inception is not None:
        fid = frechet_by_set(rows, tasks, lambda x: inception_features(nets.inception, x),
                             inception_features(nets.inception, real))
    summary = summarise(rows)
    report = {**meta, "clip": clip is not None or meta.get("clip", False), "not_computed": nets.describe_missing(),
              "summary": summary, "frechet": frechet, "fid": fid,
              "tasks": [{k: v for k, v in r.items() if k != "output"} for r in rows]}
    table = markdown_table(summary, frechet, meta["kinds"], fid, report["not_computed"])
    picture = grid(tasks, rows, meta["methods"])
    write_together([(out_dir / JUDGEMENT_FILES[0], lambda p: p.write_text(json.dumps(report, indent=2, default=float))),
                    (out_dir / JUDGEMENT_FILES[1], lambda p: p.write_text(table)),
                    (out_dir / JUDGEMENT_FILES[2], lambda p: picture.save(p, format="PNG")), *more_files])
    return report


def check_kept_run(out_dir) -> Path:
    """out_dir, if it holds a finished run's results.json and outputs.npz; else FileNotFoundError."""
    out_dir = Path(out_dir)
    missing = [f for f in (JUDGEMENT_FILES[0], OUTPUTS_FILE) if not (out_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"{out_dir} has no {' or '.join(missing)}: not the folder of a finished benchmark run")
    return out_dir


def rejudge(out_dir, evaluator, clip=None, clip_processor=None, paper_nets: PaperNets | None = None) -> dict:
    """Judge the outputs a finished run kept (outputs.npz) again, e.g. with a retrained evaluator, without
    running any method: the tasks are rebuilt from the run's seed; cost figures are kept, and so are
    the CLIP figures unless a `clip` model is given."""
    out_dir = check_kept_run(out_dir)
    report = json.loads((out_dir / JUDGEMENT_FILES[0]).read_text())
    outputs = np.load(out_dir / OUTPUTS_FILE)
    rows = []
    for r in report["tasks"]:
        row = {k: v for k, v in r.items() if k not in PAPER_NET_METRICS}  # recomputed only with the networks
        if _output_key(r) in outputs:
            row["output"] = outputs[_output_key(r)]
        rows.append(row)
    meta = {k: v for k, v in report.items() if k not in ("summary", "frechet", "fid", "tasks", "not_computed")}
    return judge(out_dir, meta, make_tasks(meta["kinds"], meta["n"], meta["seed"]), rows, evaluator, clip,
                 clip_processor, paper_nets)

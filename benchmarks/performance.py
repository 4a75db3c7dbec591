"""Speed of every method on one backbone, in one run: seconds per edit, U-Net evaluations and network
calls, the share of time inside the networks, peak memory, the ratio to the diffusers pipeline doing the
same work on the same model where one exists, the time in units of one diffusers text-to-image run
(StableDiffusionPipeline, 50 DDIM steps, CFG 7.5), and the floor: the same number of U-Net evaluations
at the best batch size, measured alone. Then the command line's start-up.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/performance.py [--model toon-64] [--repeats 3]
        [--device cpu|cuda] [--precision fp32|bf16] [--compile] [--levers] [--only RUNS] [--json FILE]

Every method runs with the backbone's defaults (`config_for`: the paper's, or toon-64's own where its
`method_defaults.json` has them) on one benchmark task; the diffusers pipelines run
with the same steps, strength and guidance, eager and in fp32 (as a user gets them). `--precision` and
`--compile` apply to semedit's runs only (`semedit.models.fast.accelerated`); `--levers` adds a table of
each speed lever alone on text-to-image. Absolute seconds drift between days on shared machines: compare
ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semedit.engine.conditioning import Condition, decode_latents, encode_text
from semedit.engine.generate import generate, generate_latents
from semedit.eval.bench import make_task, task_request
from semedit.methods import run_edit
from semedit.models.backbone import load_backbone
from semedit.models.fast import accelerated

PROMPT = "a woman with red hair, smiling"
REPO = Path(__file__).resolve().parents[1]


class NetworkTimer:
    """Wall time, calls and batch entries of the U-Net and ControlNet forward calls (hooks, no code changes)."""

    def __init__(self, unets, controlnets):
        self._t, self._handles = [], []
        self.reset()
        for net, kind in [(n, "unet") for n in unets] + [(n, "controlnet") for n in controlnets]:
            self._handles.append(net.register_forward_pre_hook(self._start, with_kwargs=True))
            self._handles.append(net.register_forward_hook(lambda m, a, k, o, kind=kind: self._stop(kind, a, k),
                                                           with_kwargs=True))

    def _start(self, module, args, kwargs):
        self._t.append(time.perf_counter())

    def _stop(self, kind, args, kwargs):
        self.seconds += time.perf_counter() - self._t.pop()
        x = args[0] if args else kwargs["sample"]
        self.calls[kind] += 1
        if kind == "unet":
            self.evaluations += int(x.shape[0])

    def reset(self):
        self.seconds, self.evaluations, self.calls = 0.0, 0, {"unet": 0, "controlnet": 0}

    def remove(self):
        for h in self._handles:
            h.remove()


class PeakMemory:
    """Peak resident memory above the level at entry (CPU: sampled every 2 ms; CUDA: the allocator's peak)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        proc, self._stop = psutil.Process(), threading.Event()
        self.base = proc.memory_info().rss

        def sample():
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, proc.memory_info().rss - self.base)
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self._stop.set()
            self._thread.join()


def diffusers_runs(bb, request, layout: np.ndarray, seed: int = 0) -> dict:
    """The diffusers pipelines on the same components, as a user calls them (DDIM, the methods' settings)."""
    from diffusers import DDIMInverseScheduler, StableDiffusionDiffEditPipeline, StableDiffusionImg2ImgPipeline

    t2i, control = bb.pipeline(), bb.pipeline("pose")  # DDIM over the backbone's own components
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(t2i)
    diffedit = StableDiffusionDiffEditPipeline.from_pipe(
        t2i, inverse_scheduler=DDIMInverseScheduler.from_config(bb.scheduler_config))
    for p in (t2i, img2img, diffedit, control):
        p.set_progress_bar_config(disable=True)
    size, pil, gen = bb.image_size, Image.fromarray(request.image), lambda: torch.Generator().manual_seed(seed)
    src, tgt = request.source_prompt, request.target_prompt

    def run_diffedit():
        mask = diffedit.generate_mask(image=pil, source_prompt=src, target_prompt=tgt, num_inference_steps=50,
                                      generator=gen())
        inv = diffedit.invert(prompt=src, image=pil, num_inference_steps=50, inpaint_strength=0.8,
                              guidance_scale=1.0).latents
        return diffedit(prompt=tgt, mask_image=mask, image_latents=inv, num_inference_steps=50, inpaint_strength=0.8,
                        guidance_scale=7.5).images[0]
    return {
        "text-to-image": lambda: t2i(PROMPT, num_inference_steps=50, guidance_scale=7.5, generator=gen(),
                                     height=size, width=size).images[0],
        "sdedit": lambda: img2img(tgt, image=pil, strength=0.5, num_inference_steps=50, guidance_scale=7.5,
                                  generator=gen()).images[0],
        "diffedit": run_diffedit,
        "text-to-image with a pose ControlNet": lambda: control(
            PROMPT, image=Image.fromarray(layout), num_inference_steps=50, guidance_scale=7.5, generator=gen(),
            height=size, width=size).images[0],
    }


def semedit_runs(bb, size: int) -> dict:
    text, layout, mapped = (make_task(k, 0) for k in ("hair", "pose", "map-mouth"))
    layout_image = task_request(layout, size, "controlnet").controls["pose"]
    return {
        "text-to-image": lambda: generate(bb, PROMPT, steps=50, guidance_scale=7.5, seed=0),
        "sdedit": lambda: run_edit("sdedit", bb, task_request(text, size, "sdedit"), seed=0),
        "diffedit": lambda: run_edit("diffedit", bb, task_request(text, size, "diffedit"), seed=0),
        "text-to-image with a pose ControlNet": lambda: generate(bb, PROMPT, steps=50, guidance_scale=7.5, seed=0,
                                                                 layouts={"pose": layout_image}),
        "controlnet (ControlNet-only edit)": lambda: run_edit(
            "controlnet", bb, task_request(layout, size, "controlnet"), seed=0),
        "ito": lambda: run_edit("ito", bb, task_request(text, size, "ito"), seed=0),
        "pixelguide": lambda: run_edit("pixelguide", bb, task_request(mapped, size, "pixelguide"), seed=0),
    }, task_request(text, size), layout_image


def image_of(output) -> np.ndarray:
    return np.asarray(getattr(output, "image", output))


def measure(runs: dict, device: torch.device, repeats: int) -> tuple[dict, dict]:
    """Each run's median over `repeats` rounds; a round times every run once, so that the machine's drift
    over minutes reaches every run alike. `runs` maps names to (fn, U-Net, ControlNets it calls).
    Also returns each run's output image."""
    images = {name: image_of(fn()) for name, (fn, _, _) in runs.items()}  # warm-up (and compilation)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (fn, unet, controlnets) in runs.items():
            timer = NetworkTimer([unet], controlnets)  # hooks only while this run runs (see FastNetwork)
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                wall = time.perf_counter() - t0
            timer.remove()
            times[name].append((wall, timer.seconds / wall, mem.peak, timer))
    rows = {}
    for name, rounds in times.items():
        timer = rounds[-1][3]
        rows[name] = {"seconds": statistics.median(r[0] for r in rounds),
                      "network_share": statistics.median(r[1] for r in rounds),
                      "unet_evaluations": timer.evaluations, "unet_calls": timer.calls["unet"],
                      "controlnet_calls": timer.calls["controlnet"], "peak_mib": max(r[2] for r in rounds) / 2**20}
    return rows, images


def unet_seconds_per_evaluation(unet, device, batches=(1, 2, 4, 8, 16, 32, 64), seconds: float = 1.0) -> dict:
    """Seconds per U-Net evaluation at each batch size, the U-Net called alone."""
    cfg = unet.config
    out = {}
    for b in batches:
        x = torch.randn(b, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=device)
        t = torch.full((b,), 500, device=device)
        text = torch.randn(b, 77, cfg.cross_attention_dim, device=device)
        with torch.inference_mode():
            unet(x, t, encoder_hidden_states=text)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 3:
                unet(x, t, encoder_hidden_states=text)
                n += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        out[b] = (time.perf_counter() - t0) / n / b
    return out


def startup_seconds(model: str, repeats: int = 3) -> dict:
    """Wall time of whole `semedit edit sdedit ... --steps 2` processes, less the edit's own time (printed)."""
    walls, edits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            cmd = [sys.executable, "-m", "semedit.cli", "edit", "sdedit", str(REPO / "src/semedit/examples/toon.png"),
                   "-t", PROMPT, "--steps", "2", "--model", model, "-o", f"{tmp}/out{i}.png"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t0)
            edits.append(float(re.search(r"([\d.]+) s\)", done.stdout).group(1)))
    return {"process_seconds": statistics.median(walls), "edit_seconds": statistics.median(edits),
            "startup_seconds": statistics.median(w - e for w, e in zip(walls, edits))}


def lever_table(bb, device, repeats: int) -> dict:
    """semedit text-to-image under each speed lever alone, against its own fp32 eager run."""
    variants = {
        "fp32, no_grad (inference_mode off)": (bb, False),
        "fp32, inference_mode": (bb, True),
        "bf16 weights": (accelerated(bb, "bf16"), True),
        "fp32, torch.compile (inductor, frozen weights)": (accelerated(bb, "fp32", compile=True), True),
        "bf16, torch.compile (inductor, frozen weights)": (accelerated(bb, "bf16", compile=True), True),
    }

    def text_to_image(b, inference: bool):
        with torch.inference_mode() if inference else torch.no_grad():
            null, text = encode_text(b, ["", PROMPT]).chunk(2)
            return decode_latents(b, generate_latents(b, Condition(text), Condition(null), 50, 7.5, 0))[0]

    reference = text_to_image(bb, True)
    rows = {}
    for name, (b, inference) in variants.items():
        t0 = time.perf_counter()
        image = text_to_image(b, inference)
        first = time.perf_counter() - t0
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            text_to_image(b, inference)
            walls.append(time.perf_counter() - t0)
        diff = np.abs(image.astype(int) - reference.astype(int))
        rows[name] = {"seconds": statistics.median(walls), "first_call_seconds": first,
                      "max_pixel_difference": int(diff.max()), "mean_pixel_difference": float(diff.mean())}
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toon-64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="semedit's networks (not diffusers')")
    ap.add_argument("--compile", action="store_true", help="semedit's networks through torch.compile")
    ap.add_argument("--levers", action="store_true", help="also: each speed lever alone on text-to-image")
    ap.add_argument("--no-startup", action="store_true")
    ap.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    ap.add_argument("--only", default=None, metavar="RUNS", help="comma-separated semedit runs (e.g. ito,diffedit) "
                    "with their diffusers counterparts; diffusers text-to-image, the unit, always runs")
    args = ap.parse_args()

    device = torch.device(args.device)
    bb = load_backbone(args.model, device=device)
    fast = accelerated(bb, args.precision, args.compile) if (args.precision != "fp32" or args.compile) else bb
    ours, request, layout = semedit_runs(fast, bb.image_size)
    theirs = diffusers_runs(bb, request, layout)
    if args.only:
        keep = args.only.split(",")
        if unknown := sorted(set(keep) - set(ours)):
            raise SystemExit(f"unknown runs {unknown}; choose from {sorted(ours)}")
        ours = {name: fn for name, fn in ours.items() if name in keep}
        theirs = {name: fn for name, fn in theirs.items() if name in keep or name == "text-to-image"}
    nets = {"diffusers": (bb.unet, list(bb.controlnets.values())),
            "semedit": (fast.unet, list(fast.controlnets.values()))}
    runs = {**{f"diffusers {name}": (fn, *nets["diffusers"]) for name, fn in theirs.items()},
            **{name: (fn, *nets["semedit"]) for name, fn in ours.items()}}
    rows, images = measure(runs, device, args.repeats)  # pipelines and methods set their own autograd modes
    if fast is not bb:  # the accelerated outputs against the default networks' (the tolerance)
        eager, _, _ = semedit_runs(bb, bb.image_size)
        for name in ours:
            diff = np.abs(images[name].astype(int) - image_of(eager[name]()).astype(int))
            rows[name].update(max_pixel_difference=int(diff.max()), mean_pixel_difference=float(diff.mean()))
    per_eval = unet_seconds_per_evaluation(fast.unet, device)
    best = min(per_eval.values())
    unit = rows["diffusers text-to-image"]["seconds"]

    print(f"model {bb.name} ({bb.image_size}x{bb.image_size}) on {device}, {torch.get_num_threads()} threads, "
          f"semedit networks: {args.precision}{', compiled' if args.compile else ''}; median of {args.repeats}\n")
    tol = fast is not bb
    print("| run | s / edit | x diffusers | units of t2i | U-Net evals | U-Net calls | ControlNet calls | "
          "in networks | peak MiB | floor s | / floor |" + (" pixel diff to fp32 eager, max / mean |" if tol else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if tol else ""))
    for name, r in rows.items():
        ref = rows.get(f"diffusers {name}")
        r["diffusers_ratio"] = r["seconds"] / ref["seconds"] if ref else None
        r["units"] = r["seconds"] / unit
        r["floor_seconds"] = r["unet_evaluations"] * best
        ratio = "" if ref is None else f"{r['diffusers_ratio']:.2f}"
        print(f"| {name} | {r['seconds']:.3f} | {ratio} | "
              f"{r['units']:.2f} | {r['unet_evaluations']} | {r['unet_calls']} | {r['controlnet_calls']} | "
              f"{100 * r['network_share']:.0f}% | {r['peak_mib']:.0f} | {r['floor_seconds']:.3f} | "
              f"{r['seconds'] / max(r['floor_seconds'], 1e-9):.2f} |"
              + (f" {r['max_pixel_difference']} / {r['mean_pixel_difference']:.2f} |"
                 if "max_pixel_difference" in r else (" |" if tol else "")))
    print("\nU-Net alone, ms per evaluation by batch size: "
          + ", ".join(f"{b}: {1000 * s:.2f}" for b, s in per_eval.items()))
    compiled = sum(n.compile_seconds for n in [fast.unet, *fast.controlnets.values()] if hasattr(n, "compile_seconds"))
    if args.compile:
        print(f"compilation (first calls of each shape, all runs): {compiled:.1f} s")
    out = {"model": bb.name, "device": str(device), "threads": torch.get_num_threads(), "precision": args.precision,
           "compile": args.compile, "compile_seconds": compiled, "repeats": args.repeats, "runs": rows,
           "unet_seconds_per_evaluation": per_eval}
    if args.levers:
        out["levers"] = lever_table(bb, device, args.repeats)
        print("\n| lever (semedit text-to-image) | s | x fp32 eager | first call s | max / mean pixel diff |\n"
              "|---|---|---|---|---|")
        base = out["levers"]["fp32, no_grad (inference_mode off)"]["seconds"]
        for name, r in out["levers"].items():
            print(f"| {name} | {r['seconds']:.3f} | {r['seconds'] / base:.2f} | {r['first_call_seconds']:.1f} | "
                  f"{r['max_pixel_difference']} / {r['mean_pixel_difference']:.3f} |")
    if not args.no_startup:
        out["startup"] = startup_seconds(args.model)
        s = out["startup"]
        print(f"\ncommand line: `semedit edit sdedit --steps 2` {s['process_seconds']:.2f} s as a whole process, "
              f"{s['edit_seconds']:.2f} s of it the edit: start-up {s['startup_seconds']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

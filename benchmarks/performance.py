"""How much of an edit's wall time is spent inside the denoising networks (goal: >= 90%, i.e. the
engine adds little around the model), and one DiffEdit edit against diffusers'
StableDiffusionDiffEditPipeline on the same model and settings, as a ratio measured in one run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/performance.py [--model toon-64] [--repeats 5]

ITO (its paper's defaults) is timed too: its latent updates and guidance image are engine work
around the U-Net; and pixelguide (its paper's defaults, a small map edit: the mouth), whose guided steps
each run the U-Net backwards too.

Both DiffEdit runs use diffusers' conventions (eps at the next timestep in inversion, blending with
the previous level) so they do the same work: 10 mask samples x 3 branches, inversion at
inpaint strength 0.8 without CFG, guided decoding (CFG 7.5), 50 steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from PIL import Image

from semedit.eval.bench import make_task, task_request
from semedit.methods import EditRequest, make_config, run_edit
from semedit.models.backbone import load_backbone
from semedit.world import resize_square


class NetworkTimer:
    """Wall time spent inside the U-Net and ControlNet forward calls (hooks, no code changes)."""

    def __init__(self, nets):
        self.seconds, self.calls, self._t, self._handles = 0.0, 0, [], []
        for net in nets:
            self._handles.append(net.register_forward_pre_hook(lambda m, a: self._t.append(time.perf_counter())))
            self._handles.append(net.register_forward_hook(self._stop))

    def _stop(self, module, args, out):
        self.seconds += time.perf_counter() - self._t.pop()
        self.calls += 1

    def reset(self):
        self.seconds, self.calls = 0.0, 0

    def remove(self):
        for h in self._handles:
            h.remove()


def diffusers_diffedit(bb, request: EditRequest, steps: int, seed: int):
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline(
        vae=bb.vae, text_encoder=bb.text_encoder, tokenizer=bb.tokenizer, unet=bb.unet,
        scheduler=DDIMScheduler.from_config(bb.scheduler_config),
        inverse_scheduler=DDIMInverseScheduler.from_config(bb.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(request.image)

    def run():
        mask = pipe.generate_mask(image=image, source_prompt=request.source_prompt,
                                  target_prompt=request.target_prompt, num_inference_steps=steps,
                                  generator=torch.Generator().manual_seed(seed))
        inv = pipe.invert(prompt=request.source_prompt, image=image, num_inference_steps=steps,
                          inpaint_strength=0.8, guidance_scale=1.0).latents
        return pipe(prompt=request.target_prompt, mask_image=mask, image_latents=inv, num_inference_steps=steps,
                    inpaint_strength=0.8, guidance_scale=7.5).images[0]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toon-64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = ap.parse_args()

    bb = load_backbone(args.model)
    task = make_task("hair", 0)
    size = bb.image_size
    request = EditRequest(resize_square(task.edit.source_render.image, size), task.target_prompt, task.source_prompt)
    timer = NetworkTimer([bb.unet, *bb.controlnets.values()])
    runs = {
        "semedit sdedit": lambda: run_edit("sdedit", bb, request, make_config("sdedit", steps=args.steps), seed=0),
        "semedit diffedit": lambda: run_edit("diffedit", bb, request, make_config(
            "diffedit", steps=args.steps, inversion_eps_timestep="next", blend_with="previous"), seed=0),
        "diffusers StableDiffusionDiffEditPipeline": diffusers_diffedit(bb, request, args.steps, seed=0),
        "semedit ito (paper defaults, 25 steps)": lambda: run_edit("ito", bb, request, make_config("ito"), seed=0),
        "semedit pixelguide (paper defaults, a mouth map edit)": lambda: run_edit(
            "pixelguide", bb, task_request(make_task("map-mouth", 0), size, "pixelguide"), seed=0),
    }
    rows = {}
    with torch.no_grad():
        for name, fn in runs.items():
            fn()  # warm-up
            walls, shares, calls = [], [], 0
            for _ in range(args.repeats):
                timer.reset()
                t0 = time.perf_counter()
                fn()
                walls.append(time.perf_counter() - t0)
                shares.append(timer.seconds / walls[-1])
                calls = timer.calls
            rows[name] = {"seconds": statistics.median(walls), "network_share": statistics.median(shares),
                          "network_calls": calls}
    ratio = rows["semedit diffedit"]["seconds"] / rows["diffusers StableDiffusionDiffEditPipeline"]["seconds"]
    print(f"model {bb.name} ({size}x{size}), {args.steps} steps, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads\n")
    print("| run | s / edit | share of time in U-Net/ControlNet calls | network calls |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds']:.3f} | {100 * r['network_share']:.1f}% | {r['network_calls']} |")
    print(f"\nsemedit diffedit / diffusers DiffEdit time: {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": bb.name, "steps": args.steps, "repeats": args.repeats, "runs": rows,
                       "diffedit_time_ratio": ratio, "threads": torch.get_num_threads()}, f, indent=2)


if __name__ == "__main__":
    main()

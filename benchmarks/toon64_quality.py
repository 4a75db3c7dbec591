"""Measures the toon-64 family against the quality bars of its model card and writes sample grids.

    .venv/bin/python benchmarks/toon64_quality.py [--parts vae,clip,text,evaluator,unet,controlnet] [--n-prompts 500]

Prints Markdown tables, writes docs/models/toon64_quality.json and PNG grids in docs/models/images/.
Held-out data: the `heldout` render cache (seed 2), made by `semedit train data`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semedit.eval.metrics import edge_f_score, frechet_distance
from semedit.eval.clip_metrics import retrieval_top1, zero_shot_accuracy
from semedit.models.backbone import family_controlnets, load_backbone, load_evaluator
from semedit.models.evaluator import attribute_accuracy, pose_errors, segmentation_accuracy
from semedit.models.text import encode_prompts
from semedit.models.vae import reconstruct
from semedit.training.data import RenderCache
from semedit.training.vae import heldout_psnr
from semedit.world import (CATEGORICAL, ToonRecord, captions, describe, observable, sample_prompt, scribble_map,
                           with_other_value)

ROOT = Path(__file__).resolve().parent.parent


def grid(images: list[np.ndarray], cols: int, zoom: int = 2) -> Image.Image:
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = \
            im if im.ndim == 3 else np.repeat(im[..., None], 3, -1)
    pil = Image.fromarray(out)
    return pil.resize((pil.width * zoom, pil.height * zoom), Image.NEAREST)


def table(rows: list[tuple], header: tuple) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


@torch.no_grad()
def text_sensitivity(bb, records, seed: int = 0) -> dict[str, tuple[float, int]]:
    """Per attribute: the mean L2 change of the text encoder's hidden states (77 x width, what the
    U-Net's cross-attention reads) when one attribute of a full caption changes to another value;
    with the number of caption pairs. An attribute the encoder barely separates is hard to prompt."""
    rng = np.random.default_rng(seed)
    out = {}
    for attr in CATEGORICAL:
        pairs = []
        for rec in records:
            changed = with_other_value(rec, attr, rng)
            if changed is not None:
                pair = (describe(rec), describe(changed))
                if pair[0] != pair[1]:
                    pairs.append(pair)
        if pairs:
            a, b = (encode_prompts(bb.text_encoder, bb.tokenizer, texts).float() for texts in zip(*pairs))
            out[attr] = (float((a - b).flatten(1).norm(dim=1).mean()), len(pairs))
    return out


def generate(pipe, prompts, seeds, steps, cfg, batch=50, **kw) -> np.ndarray:
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i:i + batch]]
        extra = {k: v[i:i + batch] for k, v in kw.items()}
        imgs = pipe(list(prompts[i:i + batch]), num_inference_steps=steps, guidance_scale=cfg, generator=gens,
                    output_type="np", **extra).images
        out.append((imgs * 255).round().astype(np.uint8))
        print(f"  generated {min(i + batch, len(prompts))}/{len(prompts)}", flush=True)
    return np.concatenate(out)


def seen_record(pred: dict) -> ToonRecord:
    """A record from the evaluator's predictions (to know what the image can show)."""
    fields = {k: v for k, v in pred.items() if k in ToonRecord.__dataclass_fields__}
    if fields.get("presentation") == "woman":
        fields["beard"] = "none"
    for k, (lo, hi) in {"head_x": (-5, 5), "head_y": (-3, 3), "head_scale": (0.9, 1.1),
                        "head_tilt": (-12, 12)}.items():
        fields[k] = float(np.clip(fields[k], lo, hi))
    return ToonRecord(**fields)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="vae,clip,text,evaluator,unet,controlnet")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    ap.add_argument("--n-prompts", type=int, default=500)
    ap.add_argument("--n-control", type=int, default=200)
    ap.add_argument("--control-kinds", default="pose,scribble")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--family", default=None, metavar="DIR",
                    help="measure this family folder (e.g. `semedit train all --family DIR`: its VAE, text encoder, "
                         "U-Net, CLIP and ControlNets) instead of the embedded one; the judge stays --evaluator's")
    ap.add_argument("--controlnet", action="append", default=[], metavar="KIND=DIR",
                    help="measure this ControlNet folder instead of the embedded one (e.g. a training run's out)")
    ap.add_argument("--unet", default=None, metavar="FILE",
                    help="measure these U-Net weights (a run's checkpoint/ema.safetensors) instead of the embedded")
    ap.add_argument("--clip", default=None, metavar="DIR",
                    help="measure this CLIP folder (a `train clip` run's out/clip), its text tower as the text encoder")
    ap.add_argument("--evaluator", default=None, metavar="DIR",
                    help="judge with this evaluator folder (a `train evaluator` run's out) instead of the embedded")
    ap.add_argument("--unet-samples", default=None, metavar="NPZ",
                    help="keep the U-Net's generated images in this file and, where it exists, judge those "
                         "instead of generating again (to compare judges on the same images)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "models"),
                    help="folder of toon64_quality.json and images/ (another one for a candidate)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    DOCS = Path(args.out)
    (DOCS / "images").mkdir(parents=True, exist_ok=True)
    out_path = DOCS / "toon64_quality.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    held = RenderCache(Path(args.cache) / "heldout")
    images, records = np.asarray(held.arrays["image"][:1000]), held.records[:1000]
    torch.manual_seed(0)
    controlnets = dict(c.split("=", 1) for c in args.controlnet)
    if args.family:
        fam = Path(args.family)
        controlnets = {**family_controlnets(fam), **controlnets}
        bb = load_backbone(str(fam), controlnets=controlnets, clip=args.clip or str(fam / "clip"))
    else:
        bb = load_backbone("toon-64", controlnets=controlnets or None, clip=args.clip)
    if args.clip:
        bb.text_encoder.load_state_dict(bb.clip.text_model.state_dict())
    if args.unet:
        from safetensors.torch import load_file

        bb.unet.load_state_dict({k: v.to(bb.unet.dtype) for k, v in load_file(args.unet).items()})

    if "vae" in parts:
        rec = reconstruct(bb.vae, images)
        p = heldout_psnr(rec, images)
        results["vae"] = {"heldout_n": len(images), "psnr_mean": round(float(p.mean()), 2),
                          "psnr_p5": round(float(np.percentile(p, 5)), 2), "scaling_factor": bb.vae.config.scaling_factor}
        grid([x for pair in zip(images[:12], rec[:12]) for x in pair], 8).save(DOCS / "images" / "vae_reconstructions.png")
        print("\n### VAE\n" + table([(len(images), results["vae"]["psnr_mean"], results["vae"]["psnr_p5"])],
                                    ("held-out images", "PSNR mean (dB)", "PSNR 5th percentile")))

    if "clip" in parts:
        zs = zero_shot_accuracy(bb.clip, bb.tokenizer, images, records)
        r1 = retrieval_top1(bb.clip, bb.tokenizer, images, records)
        results["clip"] = {"zero_shot": {k: round(v, 4) for k, v in zs.items()}, "retrieval_top1_of_100": r1}
        print("\n### CLIP zero-shot (held-out, 1000)\n" + table([(k, f"{v:.1%}") for k, v in zs.items()],
                                                                ("attribute", "accuracy")))
        print(f"text-to-image retrieval top-1 among 100: {r1:.1%}")

    if "text" in parts:
        sens = text_sensitivity(bb, records[:200])
        results["text_encoder_sensitivity"] = {k: {"state_change": round(d, 2), "pairs": n} for k, (d, n) in sens.items()}
        print("\n### Text encoder: hidden-state change when one attribute of a caption changes (held-out, 200)\n"
              + table([(k, f"{d:.1f}", n) for k, (d, n) in sorted(sens.items(), key=lambda kv: -kv[1][0])],
                      ("attribute", "mean L2 change", "caption pairs")))

    evaluator = load_evaluator(args.evaluator) if {"evaluator", "unet", "controlnet"} & set(parts) else None
    if "evaluator" in parts:
        rec = reconstruct(bb.vae, images)
        seg = np.asarray(held.arrays["seg"][:1000])
        res, preds_of = {}, {}
        for name, imgs in (("renders", images), ("vae_reconstructions", rec)):
            preds = preds_of[name] = evaluator.predict(imgs)
            res[name] = {"accuracy": attribute_accuracy(preds, records), "pose_mae": pose_errors(preds, records),
                         "segmentation_accuracy": segmentation_accuracy(evaluator.segment(imgs), seg)}
        # where expression is missed: a closed mouth leaves neutral (a line) and smiling (a shallow arc)
        # a few pixels apart, and dark lips on dark skin lower their contrast
        preds = preds_of["renders"]
        split = {}
        for name, keep in [("mouth open", lambda r: r.mouth == "open"), ("mouth closed", lambda r: r.mouth == "closed")] + [
                (f"mouth closed, {s} skin", lambda r, s=s: r.mouth == "closed" and r.skin_tone == s)
                for s in CATEGORICAL["skin_tone"]]:
            hit = [p["expression"] == r.expression for p, r in zip(preds, records) if observable(r)["expression"] and keep(r)]
            split[name] = {"accuracy": round(float(np.mean(hit)), 4), "n": len(hit)}
        res["renders"]["expression_by_case"] = split
        if evaluator.config.face_attributes:  # renders, reconstructions and what the face branch reads of each
            pick = [i for i, r in enumerate(records) if r.mouth == "closed" and r.skin_tone in ("brown", "dark")][:8]
            rows = []
            for imgs in (images[pick], rec[pick]):
                crops = evaluator.face_crops(imgs)
                rows += [np.asarray(Image.fromarray(im).resize(crops.shape[1:3], Image.NEAREST)) for im in imgs]
                rows += list(crops)
            grid(rows, len(pick)).save(DOCS / "images" / "evaluator_face_crops.png")
        print("\n### Evaluator: expression on renders by case (held-out)\n"
              + table([(k, f"{v['accuracy']:.1%}", v["n"]) for k, v in split.items()], ("case", "accuracy", "images")))
        results["evaluator"] = res
        rows = [(k, f"{res['renders']['accuracy'][k]:.1%}", f"{res['vae_reconstructions']['accuracy'][k]:.1%}")
                for k in res["renders"]["accuracy"]]
        rows += [("segmentation (pixels)", f"{res['renders']['segmentation_accuracy']:.1%}",
                  f"{res['vae_reconstructions']['segmentation_accuracy']:.1%}")]
        rows += [(f"{k} MAE", f"{res['renders']['pose_mae'][k]:.2f}", f"{res['vae_reconstructions']['pose_mae'][k]:.2f}")
                 for k in res["renders"]["pose_mae"]]
        print("\n### Evaluator (held-out, 1000)\n" + table(rows, ("attribute", "renders", "VAE reconstructions")))

    if "unet" in parts:
        prompts, named = zip(*[sample_prompt(10_000 + i) for i in range(args.n_prompts)])
        samples = Path(args.unet_samples) if args.unet_samples else None
        seconds = None
        if samples and samples.exists():
            gen = np.load(samples)["images"]
            if len(gen) != len(prompts):
                raise SystemExit(f"{samples} holds {len(gen)} images, not --n-prompts {len(prompts)}")
        else:
            pipe = bb.pipeline()
            pipe.set_progress_bar_config(disable=True)
            t0 = time.perf_counter()
            gen = generate(pipe, prompts, list(range(args.n_prompts)), args.steps, args.cfg)
            seconds = (time.perf_counter() - t0) / len(prompts)
            if samples:
                np.savez_compressed(samples, images=gen)
        preds = evaluator.predict(gen)
        hits: dict[str, list[bool]] = {}
        for p, want in zip(preds, named):
            shows = observable(seen_record(p))
            for attr, value in want.items():
                if shows.get(attr, True):
                    hits.setdefault(attr, []).append(p[attr] == value)
        acc = {k: (float(np.mean(v)), len(v)) for k, v in sorted(hits.items())}
        f_gen = frechet_distance(evaluator.features_of(gen), evaluator.features_of(images))
        f_vae = frechet_distance(evaluator.features_of(reconstruct(bb.vae, images)), evaluator.features_of(images))
        results["unet"] = {"prompts": len(prompts), "steps": args.steps, "cfg": args.cfg,
                           "named_attribute_accuracy": {k: {"accuracy": round(a, 4), "n": n} for k, (a, n) in acc.items()},
                           "frechet_evaluator_features": round(f_gen, 3),
                           "frechet_vae_reconstructions_floor": round(f_vae, 3),
                           "seconds_per_image_batched": round(seconds, 3) if seconds else None}
        grid(list(gen[:32]), 8).save(DOCS / "images" / "unet_samples.png")
        (DOCS / "images" / "unet_samples_prompts.txt").write_text("\n".join(prompts[:32]) + "\n")
        print("\n### U-Net: evaluator finds the prompted value\n" + table(
            [(k, f"{a:.1%}", n) for k, (a, n) in acc.items()], ("attribute", "accuracy", "prompts naming it")))
        print(f"Fréchet distance (evaluator features) to held-out renders: generated {f_gen:.2f}, "
              f"VAE reconstructions (floor) {f_vae:.2f}")

    if "controlnet" in parts:
        n = args.n_control
        recs = held.records[:n]
        prompts = [captions(r)["short"] for r in recs]
        res = {}
        for kind in args.control_kinds.split(","):
            if kind not in bb.controlnets:
                continue
            pipe = bb.pipeline(kind)
            pipe.set_progress_bar_config(disable=True)
            maps = np.asarray(held.arrays[kind][:n])
            cond = [Image.fromarray(m if m.ndim == 3 else np.repeat(m[..., None], 3, -1)) for m in maps]
            gen = generate(pipe, prompts, list(range(n)), args.steps, args.cfg, image=cond)
            if kind == "pose":
                preds = evaluator.predict(gen)
                dist = np.array([np.hypot(p["head_x"] - r.head_x, p["head_y"] - r.head_y) for p, r in zip(preds, recs)])
                scale = np.array([abs(p["head_scale"] / r.head_scale - 1) for p, r in zip(preds, recs)])
                ok = (dist <= 2) & (scale <= 0.1)
                res["pose"] = {"n": n, "within_2px_and_10pct": round(float(ok.mean()), 4),
                               "position_error_mean_px": round(float(dist.mean()), 3),
                               "scale_error_mean": round(float(scale.mean()), 4)}
            else:
                f = [edge_f_score(scribble_map(g), m) for g, m in zip(gen, maps)]
                f_rec = [edge_f_score(scribble_map(r), m) for r, m in zip(reconstruct(bb.vae, images[:n]), maps)]
                res["scribble"] = {"n": n, "edge_f_score_mean": round(float(np.mean(f)), 4),
                                   "vae_reconstruction_f_score": round(float(np.mean(f_rec)), 4)}
            grid([x for i in range(8) for x in (np.asarray(cond[i]), gen[i])], 8).save(
                DOCS / "images" / f"controlnet_{kind}_samples.png")
        results.setdefault("controlnet", {}).update(res)
        print("\n### ControlNets\n" + json.dumps(res, indent=2))

    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()

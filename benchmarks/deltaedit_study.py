"""DeltaEdit on the toon benchmark's text kinds (hair, expression, glasses, costume, background, eyes, mouth), against
SDEdit, DiffEdit, ITO and ControlNet-only on the same tasks and seeds, with the paper's claims as rows: D against G
(Table 4, Fig. 17), S against W+ (Table 1; give the W+ mapper with --wplus), with and without R_s (§5.5.5), routed
against flat style tokens (give the flat model with --flat); the zero-shot prompts (wordings no caption has); the cost
of an edit (G, and D by its steps T); the pictures.

    PYTHONPATH=benchmarks OMP_NUM_THREADS=2 .venv/bin/python benchmarks/deltaedit_study.py table --n 12 \\
        --out out/deltaedit_study/table --wplus runs/delta-mapper-wplus/model --flat runs/style-diffusion-flat/model
    PYTHONPATH=benchmarks OMP_NUM_THREADS=2 .venv/bin/python benchmarks/deltaedit_study.py zeroshot --n 12
    PYTHONPATH=benchmarks .venv/bin/python benchmarks/deltaedit_study.py pictures --inputs 3
    PYTHONPATH=benchmarks OMP_NUM_THREADS=2 .venv/bin/python benchmarks/deltaedit_study.py speed --n 8

Rows are kept in OUT (rows.json, outputs.npz), so a stopped run resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from study import header, kind_table, mean_se, run_study

from semedit.eval.bench import KIND_GROUPS
from semedit.methods import EditRequest, config_for, run_edit
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.world import record_seed, render, sample_record
from semedit.world.attributes import observable, with_value

ROWS = {  # label: (method, settings); DeltaEdit-D at the paper's T = 100 unless the label says otherwise
    "DeltaEdit-G": ("deltaedit", {}),
    "DeltaEdit-D": ("deltaedit", {"variant": "d", "steps": 100}),
    "DeltaEdit-G w/o R_s": ("deltaedit", {"threshold": 0.0}),
    "DeltaEdit-D w/o R_s": ("deltaedit", {"variant": "d", "steps": 100, "threshold": 0.0}),
    "DeltaEdit-D at T = 25": ("deltaedit", {"variant": "d", "steps": 25}),
    "SDEdit": ("sdedit", {}),
    "DiffEdit": ("diffedit", {}),
    "ITO": ("ito", {}),
    "ControlNet-only": ("controlnet", {}),
}
METRICS = [("edit_success", "success ↑"), ("identity_agreement", "identity ↑"),
           ("preservation_mae", "MAE outside ↓"), ("preservation_psnr", "PSNR outside ↑")]
# Zero-shot prompts (§5.2.1: "all text prompts have never been seen during training"): each edit as the world's
# captions word it, and in wordings no caption has; (attribute, value) is what the evaluator must then read.
ZERO_SHOT = [
    ("expression", "crying", "crying", "in tears"),
    ("expression", "laughing", "laughing", "laughing out loud"),
    ("expression", "angry", "angry", "furious"),
    ("hair_colour", "red", "with short red hair", "a redhead"),
    ("glasses", "round", "wearing round glasses", "with round spectacles"),
    ("costume", "santa", "santa claus costume", "dressed as father christmas"),
    ("background", "beach", "on a beach", "at the seaside"),
]


def table(args):
    rows_def = dict(ROWS)
    if args.wplus:
        rows_def["DeltaEdit-G in W+"] = ("deltaedit", {"trained_model": args.wplus})
    if args.flat:
        rows_def["DeltaEdit-D with flat tokens"] = ("deltaedit", {"variant": "d", "steps": 100,
                                                                  "diffusion_model": args.flat})
    kinds = KIND_GROUPS["text"]
    ev, _, kept, outputs, reference = run_study(args, rows_def, kinds)
    lines = [header(args.n, kept["_unit_seconds"])]
    for kind in kinds:
        lines += [f"\n**{kind}**\n", *kind_table(kept, outputs, kind, ev, reference, METRICS)]
    lines += ["\n**all text kinds**\n", *kind_table(kept, outputs, None, ev, reference, METRICS)]
    (Path(args.out) / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def zeroshot(args):
    """Success of each edit worded as the captions word it and in a wording no caption has, from an empty source
    (§3.2's setting), on `n` renders that do not show the target."""
    bb, ev = load_backbone("toon-64"), load_evaluator()
    lines = [f"n = {args.n} renders per edit (seed 40,000,000 + i, those not already showing the target); "
             "success = the evaluator reads the target value; mean ± standard error\n",
             "| edit | worded as the captions | success | zero-shot wording | success |", "|---|---|---|---|---|"]
    for variant in args.variants.split(","):
        config = config_for("deltaedit", bb, variant=variant)
        for attribute, value, caption_words, new_words in ZERO_SHOT:
            images, i = [], 0
            while len(images) < args.n:  # renders whose edited record is allowed and shows the attribute
                rec = sample_record(record_seed(40_000_000, i))
                i += 1
                target = with_value(rec, attribute, value)
                if getattr(rec, attribute) != value and target is not None and observable(target)[attribute]:
                    images.append(render(rec).image)
            cells = []
            for words in (caption_words, new_words):
                outs = np.stack([run_edit("deltaedit", bb, EditRequest(img, words, ""), config).image
                                 for img in images])
                cells.append(mean_se([p[attribute] == value for p in ev.predict(outs)]))
            lines.append(f"| {variant.upper()}: {attribute} → {value} | {caption_words} | {cells[0]} | {new_words} | "
                         f"{cells[1]} |")
            print(lines[-1], flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "zeroshot.md").write_text("\n".join(lines) + "\n")


def inversion(args):
    """The style generator's inversion of held-out renders (model card): PSNR, and per attribute the share of renders
    whose inversion the evaluator reads as the render's record (on the renders themselves as the reference)."""
    from semedit.methods.deltaedit import parts_for
    from semedit.methods.deltaedit.generator import inverted
    from semedit.training.vae import heldout_psnr
    from semedit.world.attributes import CATEGORICAL

    bb, ev = load_backbone("toon-64"), load_evaluator()
    generator, encoder, _, _ = parts_for(bb, config_for("deltaedit", bb))
    records = [sample_record(record_seed(42_000_000, i)) for i in range(args.n)]
    renders = np.stack([render(r).image for r in records])
    inversions = inverted(generator, encoder, renders)
    psnr = heldout_psnr(inversions, renders)
    lines = [f"n = {args.n} held-out renders (seed 42,000,000 + i); mean ± standard error\n",
             f"PSNR of the inversion: {mean_se(psnr)} dB\n", "| attribute | renders | inversions |", "|---|---|---|"]
    read_r, read_i = ev.predict(renders), ev.predict(inversions)
    for name in CATEGORICAL:
        shown = [k for k, r in enumerate(records) if observable(r)[name]]
        cells = [mean_se([read[k][name] == getattr(records[k], name) for k in shown]) for read in (read_r, read_i)]
        lines.append(f"| {name} (n = {len(shown)}) | {cells[0]} | {cells[1]} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "inversion.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def speed(args):
    """The cost of an edit (Table 5) on `n` held-out renders, parts loaded: DeltaEdit-G with each prompt new to the
    process (the text tower runs) and with one prompt repeated (its embeddings kept); DeltaEdit-D by the number of
    DDIM steps T (§5.3.1: 100), with Table 3's reconstruction (inversion and decoding under an unchanged s). Times
    also in units of one text-to-image run measured in the same process."""
    import time

    from layered_study import reference_unit

    from semedit.training.vae import heldout_psnr

    bb = load_backbone("toon-64")
    renders = np.stack([render(sample_record(record_seed(43_000_000, i))).image for i in range(args.n)])

    def per_edit(prompts, **settings):
        config = config_for("deltaedit", bb, **settings)
        run_edit("deltaedit", bb, EditRequest(renders[0], "on a beach", ""), config)  # loads the parts
        start = time.perf_counter()
        outs = [run_edit("deltaedit", bb, EditRequest(img, p, ""), config).image for img, p in zip(renders, prompts)]
        return (time.perf_counter() - start) / len(renders), np.stack(outs)

    unit = reference_unit(bb)
    g_new, _ = per_edit([f"crying {i}" for i in range(args.n)])
    g_kept, _ = per_edit(["crying"] * args.n)
    lines = [f"n = {args.n} held-out renders (seed 43,000,000 + i); mean ± standard error; one text-to-image run "
             f"(50 steps, CFG 7.5): {unit:.2f} s here\n",
             "| DeltaEdit-G | ms / edit | units |", "|---|---|---|",
             f"| each prompt new | {1000 * g_new:.1f} | {g_new / unit:.4f} |",
             f"| the prompt repeated | {1000 * g_kept:.1f} | {g_kept / unit:.4f} |",
             "\n| DeltaEdit-D, T | reconstruction PSNR (dB) | s / edit | units | ratio to T = 100 |",
             "|---|---|---|---|---|"]
    rows = {}
    for t in (100, 50, 25, 10):
        recon = per_edit(["crying"] * args.n, variant="d", steps=t, strength=0.0)[1]
        rows[t] = (mean_se(heldout_psnr(recon, renders)),
                   per_edit(["crying"] * args.n, variant="d", steps=t)[0])
        print(t, rows[t], flush=True)
    lines += [f"| {t} | {psnr} | {sec:.2f} | {sec / unit:.3f} | {sec / rows[100][1]:.2f} |"
              for t, (psnr, sec) in rows.items()]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pictures(args):
    """Fig. 14: inputs (rows) x prompts (columns), reconstruction first, for G and D; and Fig. 10's interpolation
    strip."""
    from semedit.methods.deltaedit import interpolate
    from semedit.world.sheets import grid as grid_of
    from semedit.world.sheets import labelled, zoom_nearest

    bb = load_backbone("toon-64")
    prompts = ["crying", "laughing", "with short red hair", "wearing round glasses", "santa claus costume",
               "on a beach"]
    inputs = [render(sample_record(record_seed(41_000_000, i))).image for i in range(args.inputs)]
    for variant in ("g", "d"):
        config = config_for("deltaedit", bb, variant=variant)
        cells, left = [], []
        for img in inputs:
            edits = [run_edit("deltaedit", bb, EditRequest(img, p, ""), config).image for p in prompts]
            recon = run_edit("deltaedit", bb, EditRequest(img, prompts[0], ""),  # under an unchanged s
                             config_for("deltaedit", bb, variant=variant, strength=0.0)).image
            cells.append([img, recon, *edits])
            left.append("")
        picture = labelled(zoom_nearest(grid_of(cells), 2), left, ["input", "recon.", *prompts], 64 * 2, 4)
        picture.save(Path(args.docs) / f"grid_{variant}.png")
        print("picture:", Path(args.docs) / f"grid_{variant}.png")
    strip = interpolate(bb, inputs[0], ("", "with short blonde hair"), ("", "crying"), np.linspace(1, 0, 6),
                        config_for("deltaedit", bb))
    picture = labelled(zoom_nearest(grid_of([list(strip)]), 2), ["G"],
                       [f"omega = {w:.1f}" for w in np.linspace(1, 0, 6)], 64 * 2, 4)
    picture.save(Path(args.docs) / "interpolation.png")
    print("picture:", Path(args.docs) / "interpolation.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["table", "zeroshot", "pictures", "inversion", "speed"])
    ap.add_argument("--n", type=int, default=12, help="tasks per kind (table) or renders per edit (zeroshot)")
    ap.add_argument("--out", default="out/deltaedit_study")
    ap.add_argument("--rows", default=None, help="only these rows (comma-separated labels)")
    ap.add_argument("--wplus", default=None, help="folder of the Delta Mapper trained in W+")
    ap.add_argument("--flat", default=None, help="folder of the style diffusion trained with flat tokens")
    ap.add_argument("--variants", default="g,d", help="zeroshot: the decoders")
    ap.add_argument("--inputs", type=int, default=4, help="pictures: input renders")
    ap.add_argument("--docs", default="docs/deltaedit", help="pictures: where they go")
    args = ap.parse_args()
    {"table": table, "zeroshot": zeroshot, "pictures": pictures, "inversion": inversion,
     "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()

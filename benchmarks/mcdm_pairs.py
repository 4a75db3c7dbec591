"""Quality of MCDM's generated pairs (§3.2) per editing direction, and the paper's Fig. 3 ablations as numbers,
judged by the evaluator on each half of every pair:

- target ✓: the right half shows the target value; source ✓: the left half the source value; pair ✓: both;
- identity between halves: the evaluator's identity attributes agree between left and right;
- identity to portrait: they agree with the identity portrait c_id was taken from (both halves);
- pose offset: |head x|, |head y| (px of 64) and |tilt| (degrees) between the halves.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mcdm_pairs.py --n 10 --out out/mcdm_pairs
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mcdm_pairs.py --n 10 --out out/mcdm_pairs \
        --variants full,no-pose,no-identity,ddim --picture docs/mcdm/pairs.png

Each variant's pairs are kept in OUT/VARIANT (resumable: a second run judges what is there and makes the rest).
"""

import argparse
from pathlib import Path

import numpy as np

from semedit.methods.mcdm.model import IDENTITY_FOLDER, load_identity_encoder
from semedit.methods.mcdm.pairs import PairConfig, PairDirection, read_pairs, write_pairs
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.world import IDENTITY_FIELDS, ToonRecord, identity_agreement, observable
from semedit.world.edits import PAIR_DIRECTIONS
from semedit.world.sheets import grid, labelled, zoom_nearest

VARIANTS = {
    "full": PairConfig(),
    "no-pose": PairConfig(pose=False),  # Fig. 3 (b)
    "no-identity": PairConfig(identity=False),  # Fig. 3 (c)
    "ddim": PairConfig(sampler="ddim"),  # deterministic DDIM instead of the stochastic Karras sampler
}
ALL_DIRECTIONS = [f"{a}={t}" for a, (_, targets) in PAIR_DIRECTIONS.items() for t in targets]


def judge(pairs: list[dict], evaluator) -> list[dict]:
    left = evaluator.predict(np.stack([p["left"] for p in pairs]))
    right = evaluator.predict(np.stack([p["right"] for p in pairs]))
    rows = []
    for p, pl, pr in zip(pairs, left, right):
        d = PairDirection.parse(p["direction"])
        person = ToonRecord.from_dict(p["identity"])
        shown = [k for k in IDENTITY_FIELDS if observable(person)[k]]
        rows.append({
            "direction": d.name,
            "target": float(pr[d.attribute] == d.target), "source": float(pl[d.attribute] == d.source),
            "identity_between": float(np.mean([pl[k] == pr[k] for k in shown])),
            "identity_to_portrait": (identity_agreement(pl, person) + identity_agreement(pr, person)) / 2,
            "dx": abs(pl["head_x"] - pr["head_x"]), "dy": abs(pl["head_y"] - pr["head_y"]),
            "dtilt": abs(pl["head_tilt"] - pr["head_tilt"])})
        rows[-1]["pair"] = rows[-1]["target"] * rows[-1]["source"]
    return rows


def mean_se(v) -> str:
    v = np.asarray(v, float)
    return f"{v.mean():.2f} ± {v.std(ddof=1) / np.sqrt(len(v)):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


COLUMNS = [("pair", "pair ✓ ↑"), ("target", "target ✓ ↑"), ("source", "source ✓ ↑"),
           ("identity_between", "identity between halves ↑"), ("identity_to_portrait", "identity to portrait ↑"),
           ("dx", "|Δ head x| px ↓"), ("dy", "|Δ head y| px ↓"), ("dtilt", "|Δ tilt| ° ↓")]


def table(groups: dict[str, list[dict]]) -> str:
    lines = ["| | n | " + " | ".join(c for _, c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, rows in groups.items():
        cells = [mean_se([r[k] for r in rows]) for k, _ in COLUMNS]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10, help="pairs per direction")
    ap.add_argument("--out", default="out/mcdm_pairs")
    ap.add_argument("--variants", default="full,no-pose,no-identity")
    ap.add_argument("--directions", default=",".join(ALL_DIRECTIONS))
    ap.add_argument("--identity-encoder", default=None)
    ap.add_argument("--picture", default=None, help="a PNG of the first pairs of each direction, per variant")
    args = ap.parse_args()
    bb, evaluator = load_backbone("toon-64"), load_evaluator()
    encoder = load_identity_encoder(args.identity_encoder or bb.root / IDENTITY_FOLDER)
    directions = [PairDirection.parse(d) for d in args.directions.split(",")]
    variants = args.variants.split(",")
    cells, left_labels = [], []
    for v in variants:
        folder = Path(args.out) / v
        write_pairs(bb, encoder, directions, args.n, folder, VARIANTS[v])
        names = {d.name for d in directions}
        pairs = [p for p in read_pairs(folder) if p["direction"] in names and p["index"] < args.n]
        rows = judge(pairs, evaluator)
        print(f"\n### {v} ({VARIANTS[v]})\n")
        print(table({**{d.name: [r for r in rows if r["direction"] == d.name] for d in directions}, "all": rows}),
              flush=True)
        for d in directions:
            first = [p for p in pairs if p["direction"] == d.name][:3]
            cells.append([np.concatenate([p["left"], p["right"]], 1) for p in first])
            left_labels.append(f"{v}: {d.name}")
    if args.picture:
        img = labelled(zoom_nearest(grid(cells), 2), left_labels, None, 64 * 2, 4)
        img.save(args.picture)
        print("picture:", args.picture)


if __name__ == "__main__":
    main()

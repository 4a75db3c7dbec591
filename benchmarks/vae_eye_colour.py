"""How much of the iris a VAE gives back: judged without the evaluator, which was trained on one VAE's
reconstructions and so favours that VAE.

    .venv/bin/python benchmarks/vae_eye_colour.py [--vae DIR ...] [--n-train 12000] [--steps 2500]

For each VAE (default: the embedded one): PSNR and the iris error (mean absolute error, 0-255, on the
iris pixels of `training.vae.iris_mask`) on the 2,000 held-out renders, and the held-out accuracy of a
*fresh* eye-colour probe trained on that VAE's reconstructions of the first --n-train training renders:
the evaluator's face-branch CNN (`cnn`, attention pooling) reading both eyes, cut out at the true
head pose and enlarged 2x, mirrored at random. Writes docs/models/images/vae_iris.png (per row: the
eyes of a held-out render, then of each VAE's reconstruction).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import AutoencoderKL

from semedit.models.evaluator import ToonEvaluator, as_tensor, attention_pool, cnn
from semedit.models.images import to_uint8
from semedit.models.toon64 import TOON64_DIR
from semedit.models.vae import reconstruct
from semedit.training.data import RenderCache
from semedit.training.vae import heldout_psnr, iris_error
from semedit.world import CATEGORICAL
from toon64_quality import grid, table

ROOT = Path(__file__).resolve().parent.parent
CROP = ToonEvaluator(face_attributes=("eye_colour",))  # its face_crop geometry: 48 px for +-1.25 head radii
EYES = (slice(16, 32), slice(8, 40))  # both eyes in that crop (head frame v -0.42..0.42, u -0.83..0.83)


def eye_crops(images: np.ndarray, records) -> torch.Tensor:
    """Both eyes at the true head pose, 2x enlarged (N x 3 x 32 x 64, in [-1, 1])."""
    pose = CROP.targets(records)["pose"]
    with torch.no_grad():
        face = torch.cat([CROP.face_crop(as_tensor(images[i:i + 500]), pose[i:i + 500])
                          for i in range(0, len(images), 500)])
    return F.interpolate(face[:, :, EYES[0], EYES[1]], scale_factor=2, mode="bilinear", align_corners=False)


class EyeColourProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.features, self.attend = cnn((32, 64, 128)), nn.Conv2d(128, 1, 1)
        self.head = nn.Linear(128, len(CATEGORICAL["eye_colour"]))

    def forward(self, x):
        return self.head(attention_pool(self.attend, self.features(x))[0])


def labels(records) -> torch.Tensor:
    """Eye-colour class indices, -1 where the eyes are closed."""
    return CROP.targets(records)["eye_colour"]


def probe_accuracy(train_x, train_y, test_x, test_y, steps: int, seed: int) -> float:
    keep = train_y >= 0
    train_x, train_y = train_x[keep], train_y[keep]
    torch.manual_seed(seed)
    net = EyeColourProbe()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(train_x), (64,), generator=g)
        x = train_x[idx]
        x = torch.where((torch.rand(64, generator=g) < 0.5)[:, None, None, None], x.flip(-1), x)
        loss = F.cross_entropy(net(x), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(test_x[i:i + 500]).argmax(1) for i in range(0, len(test_x), 500)])
    shown = test_y >= 0
    return float((pred[shown] == test_y[shown]).float().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", action="append", default=None, help="VAE folder (repeat to compare; default: toon-64's)")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    ap.add_argument("--n-train", type=int, default=12000)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", default=str(ROOT / "docs" / "models" / "images" / "vae_iris.png"))
    args = ap.parse_args()
    vaes = args.vae or [str(TOON64_DIR / "vae")]
    train, held = RenderCache(Path(args.cache) / "train"), RenderCache(Path(args.cache) / "heldout")
    renders, records = np.asarray(held.arrays["image"]), held.records
    train_renders, train_records = np.asarray(train.arrays["image"][:args.n_train]), train.records[:args.n_train]
    rows, strips = [], [eye_crops(renders[:8], records[:8])]
    for folder in vaes:
        t0 = time.perf_counter()
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
        rec = reconstruct(vae, renders)
        err = iris_error(rec, renders, held.arrays["seg"], records)
        acc = probe_accuracy(eye_crops(reconstruct(vae, train_renders), train_records), labels(train_records),
                             eye_crops(rec, records), labels(records), args.steps, args.seed)
        rows.append((folder, f"{heldout_psnr(rec, renders).mean():.2f}", f"{err:.1f}", f"{100 * acc:.1f}%"))
        strips.append(eye_crops(rec[:8], records[:8]))
        print(f"{folder}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\n### VAE: the iris on {len(renders)} held-out renders; a fresh eye-colour probe trained on "
          f"{args.n_train} reconstructions ({args.steps} steps)\n")
    print(table(rows, ("VAE", "PSNR (dB)", "iris error (0-255)", "eye colour, fresh probe")))
    pics = [to_uint8(s) for s in strips]
    grid([p[i] for i in range(8) for p in pics], len(pics), zoom=3).save(args.image)
    print(f"wrote {args.image} (per row: render, then each VAE)")


if __name__ == "__main__":
    main()

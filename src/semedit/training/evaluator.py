"""Training the attribute evaluator on world renders and on their VAE reconstructions, so that it
judges decoded images as fairly as rendered ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.evaluator import FACE_ATTRIBUTES, ToonEvaluator, attribute_accuracy, pose_errors, segmentation_accuracy
from ..models.images import to_tensor
from ..models.vae import reconstruct
from .caches import weights_tag
from .data import RenderCache
from .loop import TrainConfig, TrainRun

EVALUATOR_TRAIN = TrainConfig(steps=8000, batch_size=32, lr=2e-3, warmup=200, weight_decay=1e-4,
                              checkpoint_every=250, seed=0)
NOISE_STD = 0.03  # light Gaussian noise on inputs, for robustness to generated images
EVALUATOR_POOLING = "attention"


@dataclass
class FaceAugment:
    """Training-time changes to the face branch's crop (`ToonEvaluator.forward`), so that it learns the
    face, not the 40,000 reconstructions it sees (model card: the evaluator reads reconstructions of its
    training images better than unseen ones). The jitter is a few times the pose head's own error on
    held-out renders; the mirror keeps expression, eye colour and face shape."""

    shift_px: float = 0.5  # std of the head position's jitter
    scale: float = 0.02  # std of the relative head scale's jitter
    tilt_deg: float = 2.5  # std of the head tilt's jitter
    flip: bool = True  # mirror half the crops

    def draw(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        std = torch.tensor([self.shift_px, self.shift_px, self.scale, self.tilt_deg])
        flip = torch.rand(n, generator=g) < 0.5 if self.flip else None
        return torch.randn(n, 4, generator=g) * std, flip


def reconstructions(vae, images: np.ndarray, path: Path) -> np.ndarray:
    if path.exists():
        rec = np.load(path, mmap_mode="r")
        if len(rec) == len(images):
            return rec
    rec = reconstruct(vae, images, batch=250)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rec)
    return np.load(path, mmap_mode="r")


def evaluate(model: ToonEvaluator, images: np.ndarray, records, seg: np.ndarray) -> dict:
    preds = model.predict(images)
    return {"accuracy": attribute_accuracy(preds, records), "pose_mae": pose_errors(preds, records),
            "segmentation_accuracy": segmentation_accuracy(model.segment(images), seg)}


def with_face_branch(model: ToonEvaluator, face_attributes: tuple[str, ...]) -> ToonEvaluator:
    """`model` with a new (untrained) face branch reading `face_attributes`, if it has none; the
    trunk keeps its weights for everything else."""
    if model.config.face_attributes or not face_attributes:
        return model
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}  # _use_default_values would undo it
    new = ToonEvaluator(**{**config, "face_attributes": tuple(face_attributes)})
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f"heads.{a}." for a in face_attributes))}
    if model.attend is not None:  # attention map i belongs to the i-th attribute by name
        keep = [i for i, k in enumerate(sorted(model.heads)) if k not in face_attributes]
        state["attend.weight"], state["attend.bias"] = state["attend.weight"][keep], state["attend.bias"][keep]
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("face_") for k in missing), (missing, unexpected)
    return new


def train_evaluator(cache_dir: str | Path, vae_dir: str | Path, run_dir: str | Path, out_dir: str | Path,
                    cfg: TrainConfig = EVALUATOR_TRAIN, resume: bool = True, eval_n: int = 2000,
                    pooling: str = EVALUATOR_POOLING, init_from: str | Path | None = None,
                    face_attributes: tuple[str, ...] = FACE_ATTRIBUTES, face_only: bool = False,
                    face_augment: FaceAugment | None = None) -> dict:
    """Train the evaluator from scratch, or go on from the one in `init_from` (a fresh optimizer; its
    pooling is kept, a face branch is added if it has none). `face_only` trains the face branch alone:
    every other prediction stays exactly the trunk's; `face_augment` jitters and mirrors its crops."""
    from diffusers import AutoencoderKL

    run_dir = Path(run_dir)
    train, heldout = RenderCache(Path(cache_dir) / "train"), RenderCache(Path(cache_dir) / "heldout")
    renders = train.arrays["image"]
    torch.manual_seed(cfg.seed)
    model = (ToonEvaluator.from_pretrained(init_from, torch_dtype=torch.float32) if init_from is not None
             else ToonEvaluator(pooling=pooling))
    model = with_face_branch(model, face_attributes)
    if face_only:
        if not model.config.face_attributes:
            raise ValueError("face_only needs a face branch: pass face_attributes")
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("face_"))
    run = TrainRun(run_dir, cfg, model, "evaluator", resume=resume)
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32).to(run.device)
    # Every training image is also seen as its VAE reconstruction, so that no small set of reconstructions
    # can be memorised (model card, evaluator section).
    recons = reconstructions(vae, renders, run_dir / f"recon_train_{weights_tag(Path(vae_dir))}.npy")

    def loss_fn(step, g):
        idx = np.sort(torch.randint(len(train), (cfg.batch_size,), generator=g).numpy())
        use_recon = torch.rand(len(idx), generator=g).numpy() < 0.5  # half the batch as reconstructions
        imgs = np.where(use_recon[:, None, None, None], recons[idx], renders[idx])
        x = to_tensor(imgs) + NOISE_STD * torch.rand(len(idx), 1, 1, 1, generator=g) * torch.randn(
            imgs.shape[0], 3, 64, 64, generator=g)
        jitter, flip = face_augment.draw(len(idx), g) if face_augment else (None, None)
        out = run.module(x.to(run.device), face_jitter=jitter, face_flip=flip)
        seg = torch.from_numpy(np.asarray(train.arrays["seg"][idx]))
        return run.unwrapped().loss(out, run.unwrapped().targets([train.records[i] for i in idx]), seg), {}

    held_r = np.asarray(heldout.arrays["image"][:eval_n])
    held_records = heldout.records[:eval_n]
    held_seg = np.asarray(heldout.arrays["seg"][:eval_n])

    def probe(step):
        ev = evaluate(run.unwrapped(), held_r[:500], held_records[:500], held_seg[:500])
        return {"min_accuracy_500": min(ev["accuracy"].values()), "seg_accuracy_500": ev["segmentation_accuracy"],
                **{f"{k}_500": ev["accuracy"][k] for k in run.unwrapped().config.face_attributes}}

    run.run(loss_fn, on_checkpoint=probe)
    model = run.final_module().float().eval()
    held_v = reconstruct(vae, held_r)
    report = {"params": sum(p.numel() for p in model.parameters()), "steps": run.step, "heldout_n": len(held_r),
              "renders": evaluate(model, held_r, held_records, held_seg),
              "vae_reconstructions": evaluate(model, held_v, held_records, held_seg)}
    model.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report

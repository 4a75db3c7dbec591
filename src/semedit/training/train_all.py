"""`semedit train all`: the whole family from scratch within a wall-clock budget (4 hours by default). Each
trainable part gets a share of what is left, so a slow part shortens the ones after it; the
clock is kept on disk, so a run that is stopped and started again (even on another day) still counts
every second it has spent."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PARTS = ("data", "tokenizer", "vae", "clip", "evaluator", "unet", "controlnet-pose", "controlnet-scribble")


@dataclass(frozen=True)
class TrainAllPlan:
    hours: float = 4.0
    # Share of the training-step time per part: the U-Net needs the most samples (model card, U-Net section).
    shares: dict = field(default_factory=lambda: {
        "vae": 0.13, "clip": 0.12, "evaluator": 0.15, "unet": 0.40, "controlnet-pose": 0.10,
        "controlnet-scribble": 0.10})
    # Minutes each part spends outside its training steps, measured on this machine (model card, training
    # time): rendering the caches, the evaluator's 40,000 VAE reconstructions, the U-Net's latents, the
    # final measurements.
    overhead_minutes: dict = field(default_factory=lambda: {
        "data": 15.0, "tokenizer": 1.0, "vae": 3.0, "clip": 3.0, "evaluator": 30.0, "unet": 20.0,
        "controlnet-pose": 4.0, "controlnet-scribble": 4.0})


def step_budget(plan: TrainAllPlan, part: str, spent: dict[str, float]) -> float:
    """Minutes of training steps for `part`, given the seconds already `spent` per part (its own
    included): its share of the time left once the remaining parts' overheads are set aside."""
    todo = PARTS[PARTS.index(part):]
    left = plan.hours * 60 - sum(spent.values()) / 60 - sum(plan.overhead_minutes[p] for p in todo)
    share = plan.shares[part] / sum(plan.shares[p] for p in todo if p in plan.shares)
    return max(1.0, left * share)


class Clock:
    """Seconds spent per part, and which parts are done, in `path`; a background thread writes the running
    part's time every `every` seconds, so an interrupted run loses at most that much of its accounting."""

    def __init__(self, path: str | Path, every: float = 30.0):
        self.path, self.every = Path(path), every
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.spent: dict[str, float] = state.get("spent", {})
        self.done: list[str] = state.get("done", [])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spent": {k: round(v, 2) for k, v in self.spent.items()}, "done": self.done,
                                   "total_minutes": round(sum(self.spent.values()) / 60, 1)}, indent=2))
        tmp.replace(self.path)

    def run(self, part: str, fn) -> None:
        """Run `fn()` as `part`, adding its wall time to the part's."""
        before, t0, stop = self.spent.get(part, 0.0), time.perf_counter(), threading.Event()

        def tick():
            while not stop.wait(self.every):
                self.spent[part] = before + time.perf_counter() - t0
                self.save()

        beat = threading.Thread(target=tick, daemon=True)
        beat.start()
        try:
            fn()
        finally:
            stop.set()
            beat.join()
            self.spent[part] = before + time.perf_counter() - t0
            self.save()
        self.done.append(part)
        self.save()


def train_part(part: str, family: Path, runs_dir: Path, cache: Path, fresh: bool, minutes: float | None) -> dict | None:
    """Train one part of the family with its recipe into `family` (`minutes` of training steps at most)."""
    from ..models.evaluator import FACE_ATTRIBUTES
    from .clip import CLIP_TRAIN, TEXT_ATTRIBUTE_WEIGHT, train_clip, train_tokenizer
    from .controlnet import CONTROLNET_TRAIN, train_controlnet
    from .data import build_caches
    from .evaluator import EVALUATOR_TRAIN, train_evaluator
    from .unet import UNET_TRAIN, train_unet
    from .vae import VAE_TRAIN, train_vae

    if part == "data":
        return build_caches(cache)
    if part == "tokenizer":
        train_tokenizer(family / "tokenizer")
        return None
    run_dir, resume = runs_dir / part, not fresh
    if part == "vae":
        return train_vae(cache, run_dir, family / "vae", VAE_TRAIN.with_changes(time_budget_minutes=minutes),
                         resume=resume)
    if part == "clip":
        return train_clip(cache, family / "tokenizer", run_dir, family,
                          CLIP_TRAIN.with_changes(time_budget_minutes=minutes), resume=resume,
                          text_attribute_weight=TEXT_ATTRIBUTE_WEIGHT)
    if part == "evaluator":
        return train_evaluator(cache, family / "vae", run_dir, family / "evaluator",
                               EVALUATOR_TRAIN.with_changes(time_budget_minutes=minutes), resume=resume,
                               face_attributes=FACE_ATTRIBUTES)
    if part == "unet":
        return train_unet(cache, family, run_dir, family / "unet", UNET_TRAIN.with_changes(time_budget_minutes=minutes),
                          resume=resume)
    if part.startswith("controlnet-"):
        kind = part.split("-", 1)[1]
        return train_controlnet(kind, cache, family, run_dir, family / part,
                                CONTROLNET_TRAIN.with_changes(time_budget_minutes=minutes), resume=resume)
    raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")


def train_all(family: Path, runs_dir: Path, cache: Path, plan: TrainAllPlan = TrainAllPlan(), fresh: bool = False,
              echo: Callable[[str], None] = print) -> Clock:
    """Every part of the family in order, within `plan.hours`; run again, it goes on where it was (finished
    parts are skipped, the others resume from their checkpoints) and keeps counting."""
    from ..models.backbone import write_family_index

    clock_path = Path(runs_dir) / "train_all_times.json"
    if fresh and clock_path.exists():
        clock_path.unlink()
    clock = Clock(clock_path)
    for part in PARTS:
        if part in clock.done:
            echo(f"[train all] {part}: done before ({clock.spent[part] / 60:.1f} min)")
            continue
        minutes = None
        if part in plan.shares:
            minutes = step_budget(plan, part, clock.spent)
            echo(f"[train all] {part}: {minutes:.1f} min of training steps "
                 f"({sum(clock.spent.values()) / 60:.1f} of {plan.hours * 60:.0f} min spent)")
        clock.run(part, lambda: train_part(part, Path(family), Path(runs_dir), Path(cache), fresh, minutes))
        if part == "unet":
            write_family_index(Path(family))
        echo(f"[train all] {part} took {clock.spent[part] / 60:.1f} min")
    echo(f"[train all] total {sum(clock.spent.values()) / 60:.1f} min (budget {plan.hours * 60:.0f}); family in "
         f"{family}, times in {clock_path}")
    return clock

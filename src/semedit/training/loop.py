"""One training loop for every toon-64 component, on accelerate (one CPU, one GPU or several
processes, no code change): AdamW with warm-up and cosine decay, gradient clipping, optional EMA
weights, a JSONL loss log, a progress bar, and resumable checkpoints (safetensors weights +
optimizer state) written atomically every `checkpoint_every` steps.

Batches are drawn by the caller from a generator seeded by (seed, step, process), so a resumed
run sees exactly the data an uninterrupted one would have seen.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float | None = None  # e.g. 0.999 keeps EMA weights of the trained module
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    # Wall-clock budget (minutes, None = none): once the pace is known (timed over warm-up steps
    # warmup/4 .. warmup/2 of this invocation) the run shortens `steps` so that it ends inside the budget,
    # and the cosine schedule follows (a resumed run fits at once to the pace its checkpoint recorded, then
    # to the one it measures); the run's train_config.json records the steps. Past 1.2x the budget a run
    # ends at once.
    time_budget_minutes: float | None = None

    def with_changes(self, steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
                     seed: int = 0, time_budget_minutes: float | None = None) -> "TrainConfig":
        """This recipe with some values changed (None keeps the recipe's); checkpoint, log and warm-up
        intervals shrink to fit a shorter run."""
        steps = steps or self.steps
        return dataclasses.replace(self, steps=steps, batch_size=batch_size or self.batch_size, lr=lr or self.lr,
                                   seed=seed, time_budget_minutes=time_budget_minutes,
                                   checkpoint_every=min(self.checkpoint_every, steps),
                                   log_every=min(self.log_every, steps), warmup=min(self.warmup, steps // 2))


# A save writes checkpoint.tmp/ (state.json last), moves checkpoint/ to checkpoint.old/, renames
# checkpoint.tmp/ to checkpoint/ and deletes checkpoint.old/: a kill at any instant leaves the newest
# complete checkpoint under one of these names.
CHECKPOINT_NAMES = ("checkpoint", "checkpoint.tmp", "checkpoint.old")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _checkpoint_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder (its state.json is written last), else None."""
    try:
        return int(json.loads((folder / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def settle_checkpoints(run_dir: Path) -> int | None:
    """Leave the newest complete checkpoint of `run_dir` as checkpoint/ and delete the others (what a
    save interrupted at any instant left behind); returns its step, or None if there is none."""
    found = [(step, run_dir / name) for name in CHECKPOINT_NAMES
             if (step := _checkpoint_step(run_dir / name)) is not None]
    final = run_dir / CHECKPOINT_NAMES[0]
    if not found:
        return None
    step, best = max(found, key=lambda f: f[0])
    if best != final:
        parked = run_dir / CHECKPOINT_NAMES[2]
        if final.exists():  # an older checkpoint/: parked where the next settle would find it
            if best != parked:
                shutil.rmtree(parked, ignore_errors=True)
                final.rename(parked)
            else:
                shutil.rmtree(final)
        best.rename(final)
    for name in CHECKPOINT_NAMES[1:]:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    return step


def _truncate_log(path: Path, step: int) -> None:
    """Keep the loss log's records up to `step` (the checkpoint a run resumes from; none for a fresh run)."""
    if not path.exists():
        return

    def step_of(line: str) -> float:
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            return float("inf")

    keep = [line for line in path.read_text().splitlines() if step_of(line) <= step]
    _write_durably(path.with_suffix(".tmp"), "".join(line + "\n" for line in keep))
    path.with_suffix(".tmp").replace(path)


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


class TrainRun:
    """Trains `module` (whatever `loss_fn` uses) in `run_dir`; resumes from its checkpoint."""

    def __init__(self, run_dir: str | Path, cfg: TrainConfig, module: torch.nn.Module, name: str,
                 params=None, resume: bool = True):
        from accelerate import Accelerator

        self.run_dir, self.cfg, self.name = Path(run_dir), cfg, name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator = Accelerator()
        torch.manual_seed(cfg.seed)
        params = [p for p in (params if params is not None else module.parameters()) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.module, self.opt = self.accelerator.prepare(module, opt)
        self.ema = copy.deepcopy(module).requires_grad_(False) if cfg.ema_decay else None
        self.step, self.seconds_per_step = 0, None
        if self.accelerator.is_main_process:
            if resume:
                settle_checkpoints(self.run_dir)
            else:
                for name in CHECKPOINT_NAMES:
                    shutil.rmtree(self.run_dir / name, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        ckpt = self.run_dir / CHECKPOINT_NAMES[0]
        if _checkpoint_step(ckpt) is not None:
            self._load(ckpt)
        if self.accelerator.is_main_process:
            _truncate_log(self.run_dir / "log.jsonl", self.step)
        (self.run_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    @property
    def device(self):
        return self.accelerator.device

    def generator(self, step: int) -> torch.Generator:
        """The data generator of a step (independent of resumption)."""
        g = torch.Generator()
        g.manual_seed(hash((self.cfg.seed, step, self.accelerator.process_index)) % (2**62))
        return g

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        t = (step - c.warmup) / max(1, c.steps - c.warmup)
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.module)

    def final_module(self) -> torch.nn.Module:
        """The EMA weights if kept, else the trained weights."""
        return self.ema if self.ema is not None else self.unwrapped()

    def run(self, loss_fn: Callable[[int, torch.Generator], tuple[torch.Tensor, dict]],
            on_checkpoint: Callable[[int], dict] | None = None) -> None:
        """Train until cfg.steps. `loss_fn(step, generator)` returns (loss, extra log values)."""
        from tqdm import tqdm

        c, acc = self.cfg, self.accelerator
        bar = tqdm(total=c.steps, initial=self.step, desc=f"train {self.name}", disable=not acc.is_main_process)
        t0, running = time.perf_counter(), []
        pace_from = (self.step + max(1, c.warmup // 4), self.step + max(2, c.warmup // 2))  # steps timed for the budget
        if c.time_budget_minutes and self.seconds_per_step:  # resumed: the pace of the last run until this one's is known
            c = self._fit_budget(t0, self.seconds_per_step, bar)
        while self.step < c.steps:
            if c.time_budget_minutes and self.step in pace_from:
                if self.step == pace_from[0]:
                    t_pace = time.perf_counter()
                else:
                    c = self._fit_budget(t0, (time.perf_counter() - t_pace) / (pace_from[1] - pace_from[0]), bar)
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.module.train()
            loss, extra = loss_fn(self.step, self.generator(self.step))
            self.opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            if c.grad_clip:
                acc.clip_grad_norm_(self.module.parameters(), c.grad_clip)
            self.opt.step()
            if self.ema is not None:
                with torch.no_grad():
                    d = min(c.ema_decay, (1 + self.step) / (10 + self.step))
                    torch._foreach_lerp_(list(self.ema.parameters()),
                                         [p.detach() for p in self.unwrapped().parameters()], 1 - d)
                    for be, b in zip(self.ema.buffers(), self.unwrapped().buffers()):
                        be.copy_(b)
            self.step += 1
            running.append(loss.detach())  # read at log time: no device sync per step
            bar.update()
            if c.time_budget_minutes and time.perf_counter() - t0 > 1.2 * 60 * c.time_budget_minutes:
                c = self._set_steps(self.step, bar)  # the pace fell (or was never measured): end with this step
            if self.step % c.log_every == 0 or self.step == c.steps:
                rec = {"step": self.step, "loss": float(torch.stack(running).mean()), "lr": self.lr_at(self.step - 1),
                       "seconds": round(time.perf_counter() - t0, 1),
                       **{k: float(v) for k, v in extra.items()}}
                running = []
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if acc.is_main_process:
                    with open(self.run_dir / "log.jsonl", "a") as f:
                        f.write(json.dumps(rec) + "\n")
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self._save()
                if on_checkpoint is not None and acc.is_main_process:
                    with open(self.run_dir / "log.jsonl", "a") as f:
                        f.write(json.dumps({"step": self.step, **on_checkpoint(self.step)}) + "\n")
        bar.close()

    def _fit_budget(self, t0: float, seconds_per_step: float, bar) -> TrainConfig:
        """Shorten cfg.steps so that the run ends within cfg.time_budget_minutes (checkpoints and
        evaluations excluded) at the measured pace."""
        self.seconds_per_step = seconds_per_step
        left = self.cfg.time_budget_minutes * 60 - (time.perf_counter() - t0)
        steps = min(self.cfg.steps, self.step + max(1, int(left / seconds_per_step)))
        self.accelerator.print(f"{self.name}: {seconds_per_step:.3f} s a step; {steps} steps fit the "
                               f"{self.cfg.time_budget_minutes} min budget")
        return self._set_steps(steps, bar)

    def _set_steps(self, steps: int, bar) -> TrainConfig:
        self.cfg = dataclasses.replace(self.cfg, steps=steps)
        bar.total = steps
        (self.run_dir / "train_config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        return self.cfg

    def _save(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        final, tmp, old = (self.run_dir / name for name in CHECKPOINT_NAMES)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(_state(self.unwrapped()), tmp / "model.safetensors")
        if self.ema is not None:
            save_file(_state(self.ema), tmp / "ema.safetensors")
        torch.save(self.opt.state_dict(), tmp / "optimizer.pt")
        for f in tmp.iterdir():
            _fsync(f)
        _write_durably(tmp / "state.json", json.dumps({"step": self.step, "name": self.name,
                                                       "seconds_per_step": self.seconds_per_step}))
        # the newest complete checkpoint exists under one of the three names at every instant
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _load(self, ckpt: Path) -> None:
        self.unwrapped().load_state_dict(load_file(ckpt / "model.safetensors"))
        if self.ema is not None:
            ema_path = ckpt / "ema.safetensors"
            self.ema.load_state_dict(load_file(ema_path) if ema_path.exists() else _state(self.unwrapped()))
        self.opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        state = json.loads((ckpt / "state.json").read_text())
        self.step, self.seconds_per_step = state["step"], state.get("seconds_per_step")
        self.accelerator.print(f"resumed {self.name} from {ckpt} at step {self.step}")

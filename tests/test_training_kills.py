"""A training run killed (SIGKILL) at any instant, inside checkpoint saves included, resumes from its newest
complete checkpoint, loses at most one checkpoint interval, keeps a consistent loss log and ends with the
weights an uninterrupted run ends with."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

STEPS = 60
TRAIN = r"""
import sys, torch
from semedit.training.loop import TrainConfig, TrainRun
run_dir, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
module = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(8)])
cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
run = TrainRun(run_dir, cfg, module, "kill")
print("start", run.step, flush=True)
save = run._save
def announced():
    print("save", run.step, flush=True)
    save()
run._save = announced
run.run(lambda step, g: (run.module(torch.randn(4, 256, generator=g)).pow(2).mean(), {}))
print("done", run.step, flush=True)
"""


def _start(run_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(run_dir), str(STEPS)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def _event(proc) -> tuple[str, int]:
    """The next ("start" | "save" | "done", step) the training process prints."""
    while True:
        line = proc.stdout.readline()
        assert line, f"the training process ended without a word (exit {proc.wait()})"
        words = line.split()
        if words and words[0] in ("start", "save", "done"):
            return words[0], int(words[1])


def test_kills_at_any_instant_lose_at_most_one_interval(tmp_path):
    rng = random.Random(0)
    run_dir, saved = tmp_path / "killed", 0  # saved: the newest save known to have finished
    for _ in range(8):
        proc = _start(run_dir)
        start = _event(proc)[1]
        assert saved <= start <= saved + 1, (saved, start)  # at most the save in progress is lost
        for _ in range(rng.randint(1, 5)):  # let a few saves begin, then kill inside or just after one
            step = _event(proc)[1]
            saved = max(saved, step - 1)  # a save begins only once the previous one has finished
        time.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _start(run_dir)
    assert saved <= _event(proc)[1]
    while (event := _event(proc))[0] != "done":
        pass
    assert event == ("done", STEPS) and proc.wait() == 0
    assert sorted(p.name for p in run_dir.glob("checkpoint*")) == ["checkpoint"]
    logged = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, STEPS + 1))  # every step once, in order
    clean = _start(tmp_path / "clean")
    assert clean.communicate()[0].split("\n")[-2] == f"done {STEPS}" and clean.returncode == 0
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (run_dir, tmp_path / "clean"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the resumed run is the uninterrupted one

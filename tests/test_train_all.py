"""`semedit train all`: the time plan fits the budget, and the clock survives an interruption."""

import json
import time

import pytest

from semedit.training.train_all import PARTS, Clock, TrainAllPlan, step_budget


def _simulate(plan, overrun=None):
    """Spend each part's step budget plus its overhead (`overrun` extra minutes for one part)."""
    spent, budgets = {}, {}
    for part in PARTS:
        minutes = plan.overhead_minutes[part]
        if part in plan.shares:
            budgets[part] = step_budget(plan, part, spent)
            minutes += budgets[part]
        spent[part] = 60 * (minutes + (overrun[1] if overrun and overrun[0] == part else 0))
    return spent, budgets


def test_plan_fills_the_budget_and_a_slow_part_shortens_the_later_ones():
    plan = TrainAllPlan()
    spent, budgets = _simulate(plan)
    assert sum(spent.values()) / 60 == pytest.approx(plan.hours * 60)
    assert budgets["unet"] == pytest.approx(max(budgets.values())) and min(budgets.values()) > 10
    slow, slow_budgets = _simulate(plan, overrun=("vae", 20.0))
    assert sum(slow.values()) / 60 == pytest.approx(plan.hours * 60)
    assert slow_budgets["vae"] == pytest.approx(budgets["vae"])
    assert all(slow_budgets[p] < budgets[p] for p in ("clip", "evaluator", "unet", "controlnet-scribble"))
    # out of time: every part still gets a minimum, never a negative budget
    assert step_budget(plan, "unet", {"data": plan.hours * 3600}) == 1.0


def test_clock_counts_across_an_interruption(tmp_path):
    path = tmp_path / "times.json"
    clock = Clock(path, every=0.01)
    clock.run("data", lambda: time.sleep(0.05))

    def interrupted():
        time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        clock.run("vae", interrupted)
    saved = json.loads(path.read_text())
    assert saved["done"] == ["data"] and saved["spent"]["data"] >= 0.05 and saved["spent"]["vae"] >= 0.05
    again = Clock(path)  # a new invocation: the interrupted part's time is still counted
    again.run("vae", lambda: time.sleep(0.02))
    assert again.done == ["data", "vae"] and again.spent["vae"] >= 0.07


def test_train_all_runs_every_part_once_in_order_and_skips_finished_ones(tmp_path, monkeypatch):
    from semedit.training import train_all as ta

    calls = []
    monkeypatch.setattr(ta, "train_part", lambda part, family, runs, cache, fresh, minutes: calls.append(
        (part, minutes)))
    lines = []
    ta.train_all(tmp_path / "family", tmp_path / "runs", tmp_path / "cache", TrainAllPlan(hours=1.0), echo=lines.append)
    assert [p for p, _ in calls] == list(PARTS)
    assert all((m is None) == (p not in TrainAllPlan().shares) for p, m in calls)  # data, tokenizer: no budget
    assert (tmp_path / "family" / "model_index.json").exists()  # written once the U-Net is trained
    calls.clear()
    ta.train_all(tmp_path / "family", tmp_path / "runs", tmp_path / "cache", TrainAllPlan(hours=1.0), echo=lines.append)
    assert calls == [] and sum("done before" in line for line in lines) == len(PARTS)

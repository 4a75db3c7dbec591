"""The toon benchmark: seeded tasks, metrics that see through an oracle and a do-nothing method,
files written once, clear CLI errors."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semedit.cli import main
from semedit.eval.bench import (TASK_KINDS, make_task, make_tasks, rejudge, run_benchmark, run_method, score,
                                summarise)
from semedit.methods.base import REGISTRY, EditResult, register
from semedit.models.evaluator import ToonEvaluator
from semedit.world import describe, layer_captions, observable


@dataclass
class _NoConfig:
    pass


@pytest.fixture(scope="module")
def fake_methods():
    """'oracle' returns the ground truth (looked up by input), 'identity' returns the input."""
    truth = {}

    @register("oracle", _NoConfig, layout=True)
    def oracle(backbone, request, config, seed):
        return EditResult(truth[request.image.tobytes()], None, {}, {"method": "oracle"}, 0)

    @register("identity", _NoConfig, layout=True)
    def identity(backbone, request, config, seed):
        return EditResult(request.image.copy(), None, {}, {"method": "identity"}, 0)

    yield truth
    del REGISTRY["oracle"], REGISTRY["identity"]


@dataclass
class _FakeBackbone:
    name: str = "fake"
    image_size: int = 64
    device: torch.device = torch.device("cpu")
    controlnets: dict = None
    clip: object = None
    clip_processor: object = None
    unet: object = None
    networks: str = "eager"
    method_defaults: dict = None

    def __post_init__(self):  # networks that are never called: the fake methods make their own outputs
        self.controlnets = {"pose": torch.nn.Identity(), "scribble": torch.nn.Identity()}
        self.unet = torch.nn.Identity()
        self.method_defaults = {}


@pytest.fixture(scope="module")
def evaluator():
    torch.manual_seed(0)
    return ToonEvaluator(channels=(8, 16, 16)).eval()  # untrained: the plumbing, not the judgement


@pytest.mark.parametrize("kind", list(TASK_KINDS))
def test_tasks_are_seeded_and_well_formed(kind):
    a, b, c = make_task(kind, 3), make_task(kind, 3), make_task(kind, 4)
    assert a.edit.source == b.edit.source and a.target_prompt == b.target_prompt and a.seed == b.seed
    assert a.edit.source != c.edit.source
    attr, also = TASK_KINDS[kind].attribute, TASK_KINDS[kind].also
    assert getattr(a.edit.source, attr) != getattr(a.edit.target, attr)
    assert a.edit.changed == ((attr,) if also is None else (attr, also))
    if TASK_KINDS[kind].condition in ("text", "map"):
        assert a.source_prompt == describe(a.edit.source) and a.target_prompt == describe(a.edit.target)
        assert a.source_prompt != a.target_prompt and observable(a.edit.source)[attr] and observable(a.edit.target)[attr]
        assert not a.controls if TASK_KINDS[kind].condition == "text" else set(a.controls) == {"scribble"}
        if TASK_KINDS[kind].condition == "map":  # the map changes, locally
            changed = a.edit.source_render.seg != a.edit.target_render.seg
            assert changed.any() and not changed.all()
    else:
        cond = TASK_KINDS[kind].condition
        assert a.source_prompt == a.target_prompt
        assert a.controls[cond].shape == (64, 64, 3) and not np.array_equal(a.controls[cond], a.source_controls[cond])
    if kind == "pose":
        assert abs(a.edit.target.head_x - a.edit.source.head_x) == pytest.approx(4.0)


def test_metrics_see_the_oracle_and_the_do_nothing_method(fake_methods, evaluator):
    tasks = make_tasks(["hair", "pose"], 2)
    for t in tasks:
        fake_methods[t.edit.source_render.image.tobytes()] = t.edit.target_render.image
    bb = _FakeBackbone()
    rows = {}
    for m in ("oracle", "identity"):
        rows[m] = run_method(m, bb, tasks)
        score(rows[m], tasks, evaluator)
    for o, i in zip(rows["oracle"], rows["identity"]):
        assert o["preservation_mae"] == 0 and o["gt_mae"] == 0 and o["gt_ssim"] == pytest.approx(1.0)
        assert i["preservation_mae"] == 0 and i["gt_mae"] > 0
        assert o["edit_success"] in (0.0, 1.0) and 0 <= o["identity_agreement"] <= 1
    s = summarise(rows["oracle"] + rows["identity"])
    assert s["oracle"]["all"]["n"] == 4 and s["identity"]["hair"]["gt_mae"] > 0


def test_text_only_methods_skip_layout_tasks_and_results_are_not_overwritten(tiny, evaluator, tmp_path):
    report = run_benchmark(tiny, evaluator, ["sdedit"], ["hair", "pose"], 1, tmp_path,
                           configs={"sdedit": REGISTRY["sdedit"].config(steps=4)})
    tasks = report["tasks"]
    assert [t["kind"] for t in tasks] == ["hair", "pose"]
    assert "skipped" in tasks[1] and tasks[0]["unet_evaluations"] > 0 and "preservation_mae" in tasks[0]
    assert {"results.json", "table.md", "grid.png", "outputs.npz"} <= {p.name for p in tmp_path.iterdir()}
    table = (tmp_path / "table.md").read_text()
    assert "| sdedit | 1 |" in table and "ground_truth" in table
    with pytest.raises(FileExistsError, match="overwrite"):
        run_benchmark(tiny, evaluator, ["sdedit"], ["hair"], 1, tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method"),
    (["--tasks", "hair,nope"], "unknown task kind"),
    (["--config", "sdedit.strength=2"], "strength"),
    (["--config", "sdedit.nope=1"], "no setting"),
    (["--config", "diffedit.steps=3"], "not among --methods"),
])
def test_bench_cli_errors(args, message, tmp_path):
    r = CliRunner().invoke(main, ["bench", "--methods", "sdedit", "--out", str(tmp_path / "b"), *args])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "b").exists()


def test_rejudge_scores_the_kept_outputs_again(tiny, evaluator, tmp_path):
    report = run_benchmark(tiny, evaluator, ["sdedit"], ["hair"], 2, tmp_path,
                           configs={"sdedit": REGISTRY["sdedit"].config(steps=4)})
    torch.manual_seed(1)
    other = ToonEvaluator(channels=(8, 16, 16), pooling="attention").eval()  # another judge
    again = rejudge(tmp_path, other)
    first, second = report["tasks"], again["tasks"]
    # outputs and cost kept; pixel metrics (judge-free) equal, the judge's Fréchet distance not
    assert [t["unet_evaluations"] for t in first] == [t["unet_evaluations"] for t in second]
    assert [t["preservation_mae"] for t in first] == pytest.approx([t["preservation_mae"] for t in second])
    assert again["frechet"]["sdedit"] != report["frechet"]["sdedit"]
    assert rejudge(tmp_path, evaluator)["frechet"] == pytest.approx(report["frechet"])
    r = CliRunner().invoke(main, ["bench", "--rejudge", "--out", str(tmp_path / "none")])
    assert r.exit_code != 0 and "not the folder of a finished benchmark run" in r.output


def test_one_task_gives_no_frechet_distance_and_a_failed_judgement_writes_nothing(tiny, evaluator, tmp_path,
                                                                                 monkeypatch):
    config = {"sdedit": REGISTRY["sdedit"].config(steps=2)}
    report = run_benchmark(tiny, evaluator, ["sdedit"], ["hair"], 1, tmp_path / "one", configs=config)
    assert report["frechet"] == {} and "fewer than 2 images" in (tmp_path / "one" / "table.md").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("the grid failed")

    monkeypatch.setattr("semedit.eval.bench.grid", broken)
    with pytest.raises(RuntimeError, match="grid failed"):
        run_benchmark(tiny, evaluator, ["sdedit"], ["hair"], 2, tmp_path / "two", configs=config)
    assert not (tmp_path / "two").exists() or not any((tmp_path / "two").iterdir())


def test_map_tasks_tell_each_method_the_edit_its_own_way():
    """pixelguide gets both maps and no prompt; SDEdit the edited map painted in (stroke mode), only inside the
    changed pixels; ControlNet-only the edited scribble; the others the target prompt."""
    from semedit.eval.bench import roi_of, stroke_image, task_request

    task = make_task("map-glasses", 0)
    changed = task.edit.source_render.seg != task.edit.target_render.seg
    seg = task_request(task, 64, "pixelguide")
    assert np.array_equal(seg.edited_seg, task.edit.target_render.seg) and seg.target_prompt == ""
    strokes = task_request(task, 64, "sdedit")
    assert np.array_equal(strokes.image, stroke_image(task)) and strokes.target_prompt == task.target_prompt
    assert np.array_equal(strokes.image[~changed], task.edit.source_render.image[~changed])
    assert not np.array_equal(strokes.image[changed], task.edit.source_render.image[changed])
    assert set(task_request(task, 64, "controlnet").controls) == {"scribble"}
    text = task_request(task, 64, "diffedit")
    assert not text.controls and text.edited_seg is None and np.array_equal(text.image, task.edit.source_render.image)
    m = roi_of(task)
    assert m[changed].all() and m.sum() > changed.sum()


def test_compound_tasks_change_subject_and_background_and_only_layered_methods_get_the_parts(evaluator):
    """Both changes at once; layered methods get T_a, T_b (and the reference background), the others the
    whole target prompt; success needs both changes."""
    from semedit.eval.bench import task_request

    task = make_task("compound-reference", 0)
    assert task.edit.source.background != task.edit.target.background
    assert task.reference_image.shape == (64, 64, 3) and not np.array_equal(task.reference_image,
                                                                            task.edit.target_render.image)
    layered = task_request(task, 64, "layered")
    assert (layered.object_prompt, layered.background_prompt) == layer_captions(task.edit.target)
    assert np.array_equal(layered.reference_image, task.reference_image)
    plain = task_request(task, 64, "sdedit")
    assert plain.reference_image is None and plain.object_prompt == "" and plain.target_prompt == task.target_prompt
    assert make_task("compound-costume", 0).reference_image is None
    tasks = make_tasks(["compound-hair"], 2)
    rows = [{"method": "oracle", "kind": t.kind, "index": t.index, "output": t.edit.target_render.image} for t in tasks]
    score(rows, tasks, evaluator)
    for r in rows:
        assert r["edit_success"] == r["subject_success"] * r["background_success"]

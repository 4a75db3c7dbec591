"""ITO on the trained toon-64 family: masks from pose changes, pose and text edits judged by the
evaluator and by preservation outside the true edit region. Skipped until the U-Net, the pose
ControlNet and the evaluator are trained.

Thresholds (stated once, here): outside the true edit region (`ground_truth_edit(...).region`,
every pixel the changed attribute can touch) the edit keeps the input to a mean absolute error
below MAE_OUTSIDE (in [0, 1] units, about 15 of 255 levels, VAE round trip included); the mask
from a pose change covers the head at both positions and at least MASK_RECALL of the pixels that
really change; thresholded at TUNED_TAU instead of the paper's 0.1 it still covers the head at both
positions, matches the changed pixels better (IoU) and leaves at least MASK_FREE of the pixels
outside the true region out of it. With toon-64's own ITO defaults (its method_defaults.json, tuned on
task seed 1: docs/benchmark.md) a text edit keeps more of the input than with the paper's.
"""

import numpy as np
import pytest

from semedit.models.toon64 import TOON64_DIR
from semedit.world import describe, ground_truth_edit, sample_record

MAE_OUTSIDE = 0.06
MASK_RECALL = 0.7
MASK_FREE = 0.5
TUNED_TAU = 0.5  # best IoU with the true region on task seed 1: `benchmarks/ito_mask.py --n 2 --variants 0`

pytestmark = pytest.mark.skipif(
    not (TOON64_DIR / "model_index.json").exists() or not (TOON64_DIR / "controlnet-pose" / "config.json").exists()
    or not (TOON64_DIR / "evaluator" / "config.json").exists(),
    reason="toon-64 U-Net, pose ControlNet or evaluator not trained yet")


@pytest.fixture(scope="module")
def toon():
    from semedit.models.backbone import load_backbone

    return load_backbone("toon-64")


@pytest.fixture(scope="module")
def judge():
    from semedit.models.backbone import load_evaluator

    return load_evaluator()


def _pose_edit(seed=3):
    """A toon moved from head_x = -4 to head_x = +4 (the body follows): the ground truth and the request."""
    from semedit.methods import EditRequest

    rec = sample_record(seed).replace(head_x=-4.0, head_tilt=0.0)
    gt = ground_truth_edit(rec, head_x=4.0)
    caption = describe(rec)
    req = EditRequest(gt.source_render.image, caption, source_prompt=caption,
                      controls={"pose": gt.target_render.pose}, source_controls={"pose": gt.source_render.pose})
    return gt, req


def test_mask_from_a_pose_change_covers_the_moved_head(toon):
    from semedit.engine.masks import resize, threshold
    from semedit.methods.ito import request_edit_mask

    gt, req = _pose_edit()
    mask, soft = request_edit_mask(toon, req, seed=0)
    changed = np.abs(gt.source_render.image.astype(int) - gt.target_render.image.astype(int)).max(2) > 25
    m = resize(mask, (64, 64))[0, 0].numpy() > 0
    tuned = resize(threshold(soft, TUNED_TAU), (64, 64))[0, 0].numpy() > 0
    for render in (gt.source_render, gt.target_render):  # the head where it was and where it goes
        x, y = (int(round(v)) for v in render.keypoints["nose"])
        assert m[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].all()
        assert tuned[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].all()
    assert m[changed].mean() >= MASK_RECALL
    # at the paper's tau = 0.1 the mask covers nearly everything on toon-64; at TUNED_TAU it keeps the head
    # and leaves most of the picture out
    def iou(a):
        return (a & changed).sum() / (a | changed).sum()

    assert iou(tuned) > iou(m)
    assert (~tuned[~gt.region]).mean() >= MASK_FREE


def test_pose_edit_moves_the_head_and_keeps_the_rest(toon, judge):
    from semedit.eval.metrics import mae
    from semedit.methods import run_edit
    from semedit.methods.ito import ITOConfig

    gt, req = _pose_edit()
    res = run_edit("ito", toon, req, ITOConfig(), seed=0)
    pred = judge.predict(res.image[None])[0]["head_x"]
    source_pred = judge.predict(gt.source_render.image[None])[0]["head_x"]
    assert abs(pred - 4.0) < abs(pred - source_pred)  # nearer the target position than the input's
    assert mae(res.image, gt.source_render.image, ~gt.region) < MAE_OUTSIDE


def test_text_edit_changes_the_hair_colour_and_keeps_the_rest(toon, judge):
    """A text edit the judge reads reliably (hair colour >= 95%; it reads expressions at ~52%), with the paper's
    defaults and with toon-64's own (`config_for`): both make the hair red, toon-64's keep more outside."""
    from semedit.eval.metrics import mae
    from semedit.methods import EditRequest, config_for
    from semedit.methods import run_edit
    from semedit.methods.ito import ITOConfig

    rec = sample_record(11).replace(hair_style="long", hair_colour="black", costume="normal")
    gt = ground_truth_edit(rec, hair_colour="red")
    req = EditRequest(gt.source_render.image, describe(gt.target), source_prompt=describe(rec))
    tuned = config_for("ito", toon)
    assert tuned != ITOConfig()  # toon-64 carries its own
    errors, areas = [], []
    for config in (ITOConfig(), tuned):
        res = run_edit("ito", toon, req, config, seed=0)
        assert judge.predict(res.image[None])[0]["hair_colour"] == "red"
        errors.append(mae(res.image, gt.source_render.image, ~gt.region))
        areas.append(res.mask.mean())
    assert max(errors) < MAE_OUTSIDE
    assert errors[1] < errors[0] and areas[1] < areas[0]

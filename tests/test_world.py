import numpy as np
import pytest

from semedit.world import (CATEGORICAL, POSE_RANGES, SEG_CLASSES, ToonRecord, captions, describe, diptych,
                           ground_truth_edit, record_seed, region_of, render, sample_pair, sample_prompt,
                           sample_record, scribble_map)
from semedit.world.render import HEAD_CENTRE, HEAD_RADIUS, C
from semedit.world.raster import Canvas

SEEDS = range(12)


def test_same_seed_same_pixels():
    a, b = render(sample_record(7)), render(sample_record(7))
    for name in ("image", "seg", "pose", "scribble"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert sample_record(record_seed(3, 5)) == sample_record(record_seed(3, 5))
    assert sample_record(record_seed(3, 5)) != sample_record(record_seed(3, 6))


def test_render_shapes_and_sizes():
    for size in (64, 128):
        r = render(sample_record(1), size)
        assert r.image.shape == (size, size, 3) and r.image.dtype == np.uint8
        assert r.seg.shape == (size, size) and r.seg.max() < len(SEG_CLASSES)
        assert r.pose.shape == (size, size, 3)
        assert set(np.unique(r.scribble)) <= {0, 255}
    with pytest.raises(ValueError, match="size"):
        render(sample_record(1), 100)


def test_sampling_covers_every_value():
    seen = {k: set() for k in CATEGORICAL}
    for i in range(400):
        rec = sample_record(record_seed(0, i))
        for k in CATEGORICAL:
            seen[k].add(getattr(rec, k))
        assert rec.presentation == "man" or rec.beard == "none"
        for k, (lo, hi) in POSE_RANGES.items():
            assert lo <= getattr(rec, k) <= hi
    for k, values in CATEGORICAL.items():
        assert seen[k] == set(values), k


def test_record_validation_and_replace():
    rec = ToonRecord()
    with pytest.raises(ValueError, match="expression"):
        rec.replace(expression="bored")
    with pytest.raises(ValueError, match="unknown attribute"):
        rec.replace(hat="tall")
    with pytest.raises(ValueError, match="head_tilt"):
        rec.replace(head_tilt=90.0)
    with pytest.raises(ValueError, match="beard"):
        rec.replace(beard="full")  # a woman by default
    assert rec.replace(expression="angry").expression == "angry"
    assert ToonRecord.from_dict(rec.to_dict()) == rec


def _head_local(rec, size=64):
    """Local head coordinates (u, v) of every output pixel centre."""
    f = Canvas(size, 1).frame(HEAD_CENTRE[0] + rec.head_x, HEAD_CENTRE[1] + rec.head_y,
                              HEAD_RADIUS * rec.head_scale, rec.head_tilt)
    return f.u, f.v


def test_segmentation_classes_where_they_should_be():
    for s in SEEDS:
        rec = sample_record(s)
        r = render(rec)
        u, v = np.broadcast_arrays(*_head_local(rec))
        eyes = r.seg == C["eyes"]
        if eyes.any():
            # eyes sit inside the face: in the upper-middle band of the head frame
            assert np.all(np.abs(u[eyes]) < 0.75) and np.all(np.abs(v[eyes]) < 0.35), s
        mouth = r.seg == C["mouth"]
        assert mouth.any() and np.all((v[mouth] > 0.2) & (v[mouth] < 1.05)), s
        # the background class only where the scene shows: never at the centre of the face
        assert r.seg[int(27 + rec.head_y), int(32 + rec.head_x)] != C["background"]
        assert (r.seg == C["background"]).sum() > 500
        assert (r.seg == C["clothes"])[-3:].any()  # clothes at the bottom edge
        assert ((r.seg == C["beard"]).any()) == (rec.beard != "none") or rec.costume in ("flower", "sheep")
        assert ((r.seg == C["tears"]).any()) <= (rec.expression == "crying")
        assert ((r.seg == C["glasses"]).any()) == (rec.glasses != "none")
        headwear = (r.seg == C["headwear"]).any()
        assert headwear == (rec.costume != "normal")


def test_bald_record_has_no_hair_anywhere():
    rec = sample_record(4).replace(hair_style="bald", costume="normal")
    r = render(rec)
    assert not (r.seg == C["hair"]).any()
    assert (render(rec.replace(hair_style="long")).seg == C["hair"]).sum() > 200


def test_pose_keypoints_follow_the_head():
    rec = sample_record(2).replace(head_x=0.0, head_tilt=0.0, head_scale=1.0)
    a, b = render(rec), render(rec.replace(head_x=4.0))
    assert b.keypoints["nose"][0] - a.keypoints["nose"][0] == pytest.approx(4.0, abs=1e-3)
    big = render(rec.replace(head_scale=1.1))
    eye_dist = lambda r: r.keypoints["left_eye"][0] - r.keypoints["right_eye"][0]  # noqa: E731
    assert eye_dist(big) == pytest.approx(1.1 * eye_dist(a), rel=1e-3)
    # person's right eye is on the left of the picture; the drawing shows the joints
    assert a.keypoints["right_eye"][0] < a.keypoints["left_eye"][0]
    x, y = (int(round(c - 0.5)) for c in a.keypoints["nose"])
    assert a.pose[y, x].max() > 150 and a.pose[0, 0].max() == 0


@pytest.mark.parametrize("attr", [*CATEGORICAL, *POSE_RANGES, "scene_seed"])
def test_edit_changes_pixels_only_inside_its_region(attr):
    rng = np.random.default_rng(0)
    checked = visible = 0
    # attributes that only show under another one: test them where they show
    enable = {"background_colour": {"background": "plain"}, "shirt_colour": {"costume": "normal"},
              "gaze": {"eyes": "open"}, "eye_colour": {"eyes": "open"}}
    for s in SEEDS:
        rec = sample_record(s).replace(**enable.get(attr, {}))
        if attr in CATEGORICAL:
            values = [v for v in CATEGORICAL[attr] if v != getattr(rec, attr)]
            value = values[int(rng.integers(len(values)))]
        elif attr == "scene_seed":
            value = rec.scene_seed + 1
        else:
            lo, hi = POSE_RANGES[attr]
            value = round(float(rng.uniform(lo, hi)), 2)
        if (attr == "beard" and rec.presentation == "woman") or (attr == "presentation" and rec.beard != "none"):
            continue
        e = ground_truth_edit(rec, **{attr: value})
        changed = (e.source_render.image != e.target_render.image).any(-1)
        assert not (changed & ~e.region).any(), (attr, s)
        checked += 1
        visible += bool(changed.any())  # an edit can be hidden (hair under a sheep hood)
    assert checked >= 6 and visible >= 5


def test_edit_region_is_tight_for_part_edits():
    rec = sample_record(5).replace(expression="neutral", mouth="closed", eyes="open")
    e = ground_truth_edit(rec, mouth="open")
    assert e.region.sum() < 80  # the mouth, not the face
    assert e.target_render.seg[e.region].tolist().count(C["mouth"]) > 10
    e = ground_truth_edit(rec, background="forest")
    skin = e.source_render.seg == C["skin"]
    interior = skin.copy()  # skin pixels whose 4 neighbours are skin too (no anti-aliased edge)
    interior[1:-1, 1:-1] &= skin[:-2, 1:-1] & skin[2:, 1:-1] & skin[1:-1, :-2] & skin[1:-1, 2:]
    assert interior.sum() > 100 and not (e.region & interior).any()
    with pytest.raises(ValueError, match="leave the record"):
        ground_truth_edit(rec, mouth="closed")
    with pytest.raises(ValueError, match="no attribute"):
        ground_truth_edit(rec)
    with pytest.raises(ValueError, match="unknown attribute"):
        region_of([e.source_render], ["hat"])


def test_captions_name_the_attributes_that_are_set():
    rec = ToonRecord(presentation="man", hair_style="short", hair_colour="red", expression="laughing",
                     glasses="round", costume="santa", background="beach", beard="full")
    caps = captions(rec)
    for word in ("man", "short red hair", "laughing", "round glasses", "santa claus costume", "on a beach",
                 "full beard"):
        assert word in caps["full"], word
    assert caps["costume"] == "a man, santa claus costume"
    assert caps["short"] == "a cartoon man with short red hair, laughing"
    assert caps["expression"] == "a man, laughing"
    assert "beach" not in caps["subject"] and caps["scene"] == "a beach"
    assert "bald" in describe(rec.replace(hair_style="bald"), ["presentation", "hair"])
    assert "eyes closed" in describe(rec.replace(eyes="closed"))
    assert "looking left" in describe(rec.replace(gaze="left"))
    with pytest.raises(ValueError, match="unknown caption field"):
        describe(rec, ["hat"])


def test_sampled_prompts_name_what_they_commit_to():
    for s in range(30):
        prompt, named = sample_prompt(s)
        assert prompt.startswith("a cartoon " + named["presentation"])
        for attr, value in named.items():
            if attr in ("expression", "hair_colour", "costume", "background", "glasses") and value not in (
                    "none", "normal", "plain", "neutral"):
                assert value.split("_")[0] in prompt or attr == "costume", (attr, value, prompt)


def test_diptych_and_pairs():
    src, tgt, kind = sample_pair(3, "costume")
    assert src.costume == "normal" and tgt.costume != "normal" and kind == "costume"
    assert src.identity() == tgt.identity() and src.replace(costume=tgt.costume) == tgt
    d = diptych(src, tgt)
    assert d.image.shape == (64, 128, 3) and d.pose.shape == (64, 128, 3)
    assert np.array_equal(d.pose[:, :64], d.pose[:, 64:])  # same pose left and right
    assert d.caption == f"the same {src.presentation} on the left and right"
    assert d.left_caption == f"a {src.presentation}, normal costume"
    with pytest.raises(ValueError, match="one identity"):
        diptych(src, tgt.replace(hair_colour="blue" if tgt.hair_colour != "blue" else "red"))


def test_scribble_finds_edges_of_any_image():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 255
    edges = scribble_map(img)
    assert edges[:, 15:17].all(axis=0).any() and edges[:, :13].sum() == 0 and edges[:, 19:].sum() == 0
    assert scribble_map(np.full((8, 8, 3), 128, np.uint8)).sum() == 0
    with pytest.raises(ValueError, match="RGB"):
        scribble_map(np.zeros((8, 8), np.uint8))

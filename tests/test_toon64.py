"""The embedded toon-64 family: it loads, diffusers' own pipelines load it, and it generates
deterministically."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from semedit.cli import main
from semedit.models.backbone import load_backbone, load_evaluator
from semedit.models.toon64 import TOON64_DIR
from semedit.world import CATEGORICAL, ToonRecord, render

# These run once the parts they need are trained (the U-Net writes model_index.json); the parts
# trained before it are tested in test_toon64_parts.py.
TRAINED_CONTROLNETS = [k for k in ("pose", "scribble") if (TOON64_DIR / f"controlnet-{k}" / "config.json").exists()]
HAS_CONTROLNETS = len(TRAINED_CONTROLNETS) == 2
HAS_EVALUATOR = (TOON64_DIR / "evaluator" / "config.json").exists()
pytestmark = pytest.mark.skipif(not (TOON64_DIR / "model_index.json").exists(), reason="toon-64 U-Net not trained yet")
needs_controlnets = pytest.mark.skipif(not HAS_CONTROLNETS, reason="toon-64 ControlNets not trained yet")
needs_pose = pytest.mark.skipif("pose" not in TRAINED_CONTROLNETS, reason="toon-64 pose ControlNet not trained yet")
needs_evaluator = pytest.mark.skipif(not HAS_EVALUATOR, reason="toon-64 evaluator not trained yet")


@pytest.fixture(scope="module")
def toon():
    return load_backbone("toon-64")


@needs_controlnets
@needs_evaluator
def test_embedded_family_loads(toon):
    assert toon.image_size == 64 and toon.vae_scale_factor == 4
    assert set(toon.controlnets) == {"pose", "scribble"} and toon.clip is not None
    assert toon.tokenizer.model_max_length == 77
    family = ("vae", "unet", "text_encoder", "clip", "tokenizer", "controlnet-pose", "controlnet-scribble", "evaluator")
    for part in family:
        files = list((TOON64_DIR / part).iterdir())
        assert not any(f.suffix in (".bin", ".pt", ".ckpt", ".pth") for f in files), part
    # The 80 MB bar is the family's own; the methods' trained parts beside it are not part of it.
    weights = [w for part in family for w in (TOON64_DIR / part).rglob("*.safetensors")]
    assert len(weights) >= 6 and sum(w.stat().st_size for w in weights) < 80e6
    from safetensors import safe_open

    with safe_open(TOON64_DIR / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16


def test_diffusers_pipeline_loads_the_family():
    from diffusers import StableDiffusionPipeline

    # torch_dtype: transformers 5 loads the text encoder in its stored fp16, diffusers the rest in fp32
    pipe = StableDiffusionPipeline.from_pretrained(TOON64_DIR, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    img = pipe("a cartoon woman with long red hair, laughing", num_inference_steps=3, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert img.shape == (1, 64, 64, 3) and img.std() > 0.01


@needs_pose
def test_diffusers_controlnet_pipeline_loads_the_family():
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    cn = ControlNetModel.from_pretrained(TOON64_DIR / "controlnet-pose", torch_dtype=torch.float32)
    cpipe = StableDiffusionControlNetPipeline.from_pretrained(TOON64_DIR, controlnet=cn, torch_dtype=torch.float32,
                                                              safety_checker=None,
                                                              requires_safety_checker=False)
    pose = Image.fromarray(render(ToonRecord()).pose)
    img = cpipe("a cartoon man", image=pose, num_inference_steps=3, output_type="np",
                generator=torch.Generator().manual_seed(0)).images
    assert img.shape == (1, 64, 64, 3)


def test_generation_is_deterministic(toon):
    pipe = toon.pipeline()
    run = lambda seed: pipe("a cartoon man, santa claus costume", num_inference_steps=4, output_type="np",  # noqa: E731
                            generator=torch.Generator().manual_seed(seed)).images
    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.skipif(not TRAINED_CONTROLNETS, reason="no toon-64 ControlNet trained yet")
def test_controlnets_are_trained_off_zero(toon):
    from semedit.models.images import control_tensor

    x = torch.randn(1, 4, 16, 16)
    cond = toon.text_encoder(toon.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
    assert set(toon.controlnets) == set(TRAINED_CONTROLNETS)
    for name, net in toon.controlnets.items():
        control = control_tensor(getattr(render(ToonRecord()), name)[None])
        with torch.no_grad():
            down, mid = net(x, torch.tensor([500]), encoder_hidden_states=cond, controlnet_cond=control,
                            return_dict=False)
        assert mid.abs().mean() > 1e-3, name


READ_RECORD = ToonRecord(presentation="man", hair_style="short", hair_colour="red", expression="laughing",
                         glasses="round", costume="santa", background="beach")


@needs_evaluator
def test_evaluator_reads_a_render():
    pred = load_evaluator().predict(render(READ_RECORD).image[None])[0]
    for k in ("presentation", "hair_colour", "glasses", "costume", "background"):
        assert pred[k] == getattr(READ_RECORD, k), k


@needs_evaluator
def test_evaluator_reads_every_expression_and_gaze():
    """The face details (a few pixels each) that the 2,500-step mean-pooled evaluator read at ~50%."""
    ev = load_evaluator()
    for field in ("expression", "gaze"):
        values = CATEGORICAL[field]
        preds = ev.predict(np.stack([render(READ_RECORD.replace(**{field: v})).image for v in values]))
        assert [p[field] for p in preds] == list(values), field


def test_cli_generate(tmp_path):
    out = tmp_path / "g.png"
    r = CliRunner().invoke(main, ["generate", "a cartoon woman, crying", "--steps", "3", "--seed", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    meta = json.loads(Image.open(out).text["semedit"])
    assert meta["seed"] == 1 and meta["prompt"] == "a cartoon woman, crying"
    r = CliRunner().invoke(main, ["generate", "a cartoon man", "--steps", "2", "-o", str(out)])
    assert r.exit_code != 0 and "exists" in r.output
    pose = tmp_path / "pose.png"
    Image.fromarray(render(ToonRecord()).pose).save(pose)
    r = CliRunner().invoke(main, ["generate", "a man", "--pose", str(pose), "--scribble", str(pose), "-o",
                                  str(tmp_path / "s.png")])
    assert r.exit_code != 0 and "not both" in r.output


@needs_pose
def test_cli_generate_with_a_pose(tmp_path):
    pose = tmp_path / "pose.png"
    Image.fromarray(render(ToonRecord()).pose).save(pose)
    r = CliRunner().invoke(main, ["generate", "a cartoon man", "--pose", str(pose), "--steps", "2", "-o",
                                  str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.png"
    Image.new("RGB", (32, 32)).save(bad)
    r = CliRunner().invoke(main, ["generate", "a cartoon man", "--pose", str(bad), "-o", str(tmp_path / "s.png")])
    assert r.exit_code != 0 and "32x32" in r.output and "64x64" in r.output

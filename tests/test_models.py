import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semedit.models.backbone import BackboneNotFound, load_backbone
from semedit.training.data import RenderCache
from semedit.training.loop import TrainConfig

from tests.helpers import tiny_sd_folder as _tiny_sd_folder

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4)


TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
                 norm_num_groups=8)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    from semedit.training.data import PairCache

    root = tmp_path_factory.mktemp("cache")
    RenderCache.build(root / "train", 8, seed=1, workers=1)
    RenderCache.build(root / "heldout", 4, seed=2, workers=1)
    PairCache.build(root / "pairs", 4, seed=3, workers=1)
    return root


def test_diffusers_folder_round_trips_through_load_backbone(tmp_path):
    pipe = _tiny_sd_folder(tmp_path / "sd")
    bb = load_backbone(str(tmp_path / "sd"))
    assert bb.image_size == 16 and bb.tokenizer.model_max_length == 77
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([10])
    ids = bb.tokenizer(["a cartoon woman, laughing"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        c_ref, c = pipe.text_encoder(ids)[0], bb.text_encoder(ids)[0]
        assert torch.equal(c_ref, c)
        assert torch.equal(pipe.unet(x, t, c_ref).sample, bb.unet(x, t, c).sample)
        img = torch.rand(1, 3, 16, 16) * 2 - 1
        assert torch.equal(pipe.vae.encode(img).latent_dist.mean, bb.vae.encode(img).latent_dist.mean)
    assert bb.scheduler_config["clip_sample"] is False and bb.scheduler_config["set_alpha_to_one"] is False
    # and the loaded components drive a diffusers pipeline deterministically
    out = [bb.pipeline()("a cartoon man", num_inference_steps=2, height=16, width=16, output_type="np",
                         generator=torch.Generator().manual_seed(3)).images for _ in range(2)]
    assert np.array_equal(out[0], out[1])


def test_missing_models_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    t0 = time.perf_counter()
    with pytest.raises(BackboneNotFound, match="not in the local Hugging Face cache.*hf download"):
        load_backbone("someone/not-a-cached-model")
    assert time.perf_counter() - t0 < 10
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(BackboneNotFound, match="missing vae/, text_encoder/, tokenizer/, scheduler/"):
        load_backbone(str(tmp_path / "half"))
    with pytest.raises(BackboneNotFound, match="neither a local folder nor a hub id"):
        load_backbone("no such thing")


def test_training_resumes_exactly(tiny_cache, tmp_path):
    """Two steps, stop, two more steps == four steps in one go (weights equal)."""
    from semedit.training.vae import train_vae

    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    train_vae(tiny_cache, tmp_path / "a", tmp_path / "a_out", cfg, config=TINY_VAE, eval_n=4)
    assert json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["step"] == 2
    cfg4 = TrainConfig(**{**cfg.__dict__, "steps": 4})
    report = train_vae(tiny_cache, tmp_path / "a", tmp_path / "a_out", cfg4, config=TINY_VAE, eval_n=4)
    assert report["steps"] == 4
    train_vae(tiny_cache, tmp_path / "b", tmp_path / "b_out", cfg4, config=TINY_VAE, eval_n=4)
    a = load_file(tmp_path / "a" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]  # the resumed run appends
    assert [r["step"] for r in log if "heldout_psnr_200" in r] == [1, 2, 3, 4]
    # the saved VAE is fp16 safetensors in the diffusers layout, with its measured latent scale
    cfg_saved = json.loads((tmp_path / "a_out" / "config.json").read_text())
    assert cfg_saved["scaling_factor"] == pytest.approx(report["scaling_factor"], rel=1e-3)
    assert load_file(tmp_path / "a_out" / "diffusion_pytorch_model.safetensors")["encoder.conv_in.weight"].dtype \
        == torch.float16
    # the same run with the iris weighted (`train vae --iris-weight`) learns something else
    weighted = train_vae(tiny_cache, tmp_path / "c", tmp_path / "c_out", cfg4, config=TINY_VAE, eval_n=4,
                         iris_weight=30.0)
    assert weighted["iris_weight"] == 30.0 and report["iris_weight"] == 0.0
    c = load_file(tmp_path / "c" / "checkpoint" / "model.safetensors")
    assert any(not torch.equal(b[k], c[k]) for k in b)


def test_decoder_finetune_keeps_the_encoder_and_resumes(tiny_cache, tmp_path):
    """`train vae --decoder-only`: the decoder moves, the encoder (the latent space) does not; resumable."""
    from diffusers import AutoencoderKL

    from semedit.training.vae import finetune_decoder

    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(tmp_path / "vae")
    before = load_file(tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-2, warmup=1, checkpoint_every=1, log_every=1, seed=0, ema_decay=0.9)
    finetune_decoder(tiny_cache, tmp_path / "vae", tmp_path / "run", tmp_path / "out", cfg, iris_weight=30.0, eval_n=4)
    report = finetune_decoder(tiny_cache, tmp_path / "vae", tmp_path / "run", tmp_path / "out",
                              TrainConfig(**{**cfg.__dict__, "steps": 3}), iris_weight=30.0, eval_n=4)
    assert report["steps"] == 3 and report["iris_weight"] == 30.0 and np.isfinite(report["heldout_psnr_mean"])
    after = load_file(tmp_path / "out" / "diffusion_pytorch_model.safetensors")
    kept = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert kept and all(torch.equal(before[k].half(), after[k]) for k in kept)
    assert any(not torch.equal(before[k].half(), after[k]) for k in before if k.startswith("decoder."))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["scaling_factor"] == \
        json.loads((tmp_path / "vae" / "config.json").read_text())["scaling_factor"]


def test_iris_mask_finds_the_iris_and_weights_the_loss():
    from semedit.training.vae import iris_mask, reconstruction_loss
    from semedit.world import render, sample_record
    from semedit.world.render import SEG_CLASSES

    recs = [sample_record(i) for i in range(40)]
    open_eyes = next(r for r in recs if r.eyes == "open" and r.glasses == "none")
    closed = next(r for r in recs if r.eyes == "closed")
    shown = [render(r) for r in (open_eyes, closed)]
    m = iris_mask(np.stack([s.image for s in shown]), np.stack([s.seg for s in shown]), [open_eyes, closed])
    assert m.shape == (2, 1, 64, 64) and m[1].sum() == 0  # closed eyes show no iris
    eyes = torch.from_numpy(shown[0].seg == SEG_CLASSES.index("eyes"))
    grown = torch.nn.functional.max_pool2d(eyes[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert 4 <= m[0].sum() <= 80 and bool((grown | ~(m[0, 0] > 0)).all())  # a few pixels, all at the eyes
    x, y = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    y[0, :, 0, 0] = 1.0  # an error off the iris
    plain = reconstruction_loss(y, x)
    assert reconstruction_loss(y, x, torch.ones(1, 1, 64, 64)).item() == pytest.approx(plain.item())
    assert reconstruction_loss(y, x, 1 + 30 * m[:1]).item() < plain.item()


def test_time_budget_shortens_the_run_to_the_measured_pace(tmp_path):
    """A 0.05 s step under a 0.02-minute (1.2 s) budget: the run sets its steps once the pace is known
    (timed over steps 2-4 of an 8-step warm-up) and ends there, with the schedule and the saved config
    following; a resumed run fits its new budget at once to the recorded pace; a run whose pace is never
    measured stops at 1.2x the budget."""
    from semedit.training.loop import TrainRun

    def loss_fn(step, g):
        time.sleep(0.05)
        return (module.weight ** 2).sum(), {}

    module = torch.nn.Linear(2, 2)
    cfg = TrainConfig(steps=10_000, warmup=8, checkpoint_every=5, log_every=5, time_budget_minutes=0.02)
    run = TrainRun(tmp_path / "a", cfg, module, "tiny")
    run.run(loss_fn)
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert 10 <= run.step <= 30 and saved["steps"] == run.step == run.cfg.steps
    assert json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["step"] == run.step
    assert run.lr_at(run.step - 1) == pytest.approx(cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
        1 + np.cos(np.pi * (run.step - 1 - cfg.warmup) / (run.step - cfg.warmup)))))  # cosine ends with the run
    assert json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["seconds_per_step"] >= 0.05
    # resumed with a new budget: the recorded pace fits the schedule from its first step (not the 10,000-step one)
    lrs, first_run_steps = [], run.step
    resumed = TrainRun(tmp_path / "a", cfg, module, "tiny")

    def recording_loss_fn(step, g):
        lrs.append(resumed.opt.param_groups[0]["lr"])
        return loss_fn(step, g)

    resumed.run(recording_loss_fn)
    assert lrs[0] < 0.9 * cfg.lr and 2 * first_run_steps - 10 <= resumed.step <= 2 * first_run_steps + 10
    slow = TrainRun(tmp_path / "b", TrainConfig(steps=10_000, warmup=1000, time_budget_minutes=0.01), module, "slow")
    slow.run(loss_fn)  # pace would be timed at steps 250-500: the 0.72 s cut-off ends it first
    assert 10 <= slow.step <= 20
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["steps"] == slow.step


def test_latent_centering_keeps_reconstructions(tiny_cache):
    from diffusers import AutoencoderKL

    from semedit.models.images import to_tensor
    from semedit.training.vae import center_latents

    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_VAE).eval()
    images = np.asarray(RenderCache(tiny_cache / "train").arrays["image"])
    with torch.no_grad():
        before = vae.decode(vae.encode(to_tensor(images)).latent_dist.mode()).sample
        stats = center_latents(vae, images)
        z = vae.encode(to_tensor(images)).latent_dist.mode()
        after = vae.decode(z).sample
    assert torch.allclose(before, after, atol=1e-4)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (z * stats["scaling_factor"]).std().item() == pytest.approx(1.0, rel=1e-3)


def test_tokenizer_is_clip_format(tmp_path):
    from transformers import CLIPTokenizer

    from semedit.training.clip import train_tokenizer

    train_tokenizer(tmp_path / "tok", vocab_size=600)
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.model_max_length == 77
    ids = tok("a cartoon woman, santa claus costume").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["a</w>", "cartoon</w>", "woman</w>", ",</w>", "santa</w>",
                                                    "claus</w>", "costume</w>"]
    assert tok.unk_token_id not in tok("a photo of a zebra").input_ids[1:-1]  # unseen words still encode


def test_unet_and_controlnet_training_run_on_a_tiny_family(tiny_cache, tmp_path):
    from diffusers import AutoencoderKL, ControlNetModel
    from transformers import CLIPConfig, CLIPModel

    from semedit.training.controlnet import train_controlnet
    from semedit.models.text import load_text_encoder
    from semedit.training.unet import train_unet

    pipe = _tiny_sd_folder(tmp_path / "sd")
    family = tmp_path / "family"
    pipe.tokenizer.save_pretrained(family / "tokenizer")
    pipe.text_encoder.save_pretrained(family / "text_encoder")
    torch.manual_seed(0)
    AutoencoderKL(**TINY_VAE).save_pretrained(family / "vae")
    cfg = TrainConfig(steps=4, batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, log_every=1, seed=0,
                      ema_decay=0.9)
    # conditioned on a CLIP folder's text tower (how a U-Net is trained for a retrained CLIP)
    torch.manual_seed(1)
    clip = CLIPModel(CLIPConfig(text_config=pipe.text_encoder.config.to_dict(), projection_dim=16,
                                vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=16, patch_size=8)))
    clip.save_pretrained(tmp_path / "clip")
    ids = pipe.tokenizer(["a cartoon man, smiling"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(load_text_encoder(tmp_path / "clip")(ids)[0], clip.text_model(ids)[0])
    report = train_unet(tiny_cache, family, tmp_path / "runs" / "unet", family / "unet", cfg, config=TINY_UNET,
                        text_encoder_dir=tmp_path / "clip", face_loss_weight=4.0)
    assert report["steps"] == 4 and (family / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "runs" / "unet" / "checkpoint" / "ema.safetensors").exists()
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, log_every=1, seed=0)
    candidate = dict(text_encoder_dir=tmp_path / "clip", unet_dir=family / "unet")  # the U-Net's own text tower
    report = train_controlnet("pose", tiny_cache, family, tmp_path / "runs" / "cn", family / "cn", cfg, **candidate)
    assert report["residual_mean_abs"] > 0  # two steps already move the zero-initialised outputs
    cn = ControlNetModel.from_pretrained(family / "cn")
    assert cn.config.conditioning_embedding_out_channels == [16, 32, 64]
    # going on from those weights (at a vanishing lr): the residuals are theirs, not a fresh ControlNet's zeros
    cfg_on = TrainConfig(steps=1, batch_size=2, lr=1e-12, warmup=1, checkpoint_every=1, log_every=1, seed=1)
    again = train_controlnet("pose", tiny_cache, family, tmp_path / "runs" / "cn2", family / "cn2", cfg_on,
                             init_from=family / "cn", **candidate)
    assert again["residual_mean_abs"] == pytest.approx(report["residual_mean_abs"], rel=1e-2)
    with pytest.raises(ValueError, match="kind must be one of"):
        train_controlnet("depth", tiny_cache, family, tmp_path / "x", tmp_path / "y", cfg)


def test_face_loss_weights_follow_the_face():
    from semedit.training.diffusion import diffusion_loss, face_loss_weights
    from semedit.world import render, sample_record
    from semedit.world.render import SEG_CLASSES

    seg = render(sample_record(3), 64).seg
    w = face_loss_weights(seg[None], 16, 5.0)
    assert w.shape == (1, 1, 16, 16) and w.min() == 1 and w.max() == pytest.approx(6.0)
    blocks = seg.reshape(16, 4, 16, 4).transpose(0, 2, 1, 3).reshape(16, 16, 16)
    eyes = (blocks == SEG_CLASSES.index("eyes")).any(-1)
    background = (blocks == SEG_CLASSES.index("background")).all(-1)
    assert eyes.any() and (w[0, 0][eyes] > 1).all() and (w[0, 0][background] == 1).all()
    # uniform weights are the plain loss; an error on the face costs more, one on the background less
    alphas, t = torch.linspace(0.99, 0.01, 1000), torch.tensor([500])
    noise = torch.zeros(1, 4, 16, 16)
    pred = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert diffusion_loss(pred, noise, t, alphas, torch.full((1, 1, 16, 16), 3.0)).item() == \
        pytest.approx(diffusion_loss(pred, noise, t, alphas).item())
    for where, cheaper in ((eyes, False), (background, True)):
        err = torch.zeros(1, 4, 16, 16)
        err[0, :, torch.from_numpy(where)] = 1.0
        weighted, unweighted = diffusion_loss(err, noise, t, alphas, w), diffusion_loss(err, noise, t, alphas)
        assert (weighted < unweighted) == cheaper


def test_clip_training_runs_and_measures(tiny_cache, tmp_path):
    from transformers import CLIPModel, CLIPTextModel

    from semedit.models.toon64 import TOON64_DIR
    from semedit.training.clip import train_clip

    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=2, log_every=1, seed=0)
    report = train_clip(tiny_cache, TOON64_DIR / "tokenizer", tmp_path / "run", tmp_path / "out", cfg, eval_n=4)
    assert report["steps"] == 2 and set(report["zero_shot_heldout"]) >= {"expression", "costume", "background"}
    assert all(0 <= v <= 1 for v in report["zero_shot_heldout"].values())
    assert 0 <= report["retrieval_top1_of_100"] <= 1
    clip = CLIPModel.from_pretrained(tmp_path / "out" / "clip")
    text = CLIPTextModel.from_pretrained(tmp_path / "out" / "text_encoder")
    assert clip.config.projection_dim == 128 and text.config.hidden_size == 128
    ids = torch.tensor([[0, 5, 9, 1]])
    with torch.no_grad():  # the text encoder is exactly CLIP's text tower
        assert torch.equal(text(ids)[0], clip.text_model(ids)[0])


def test_evaluator_training_sees_every_image_reconstructed_resumes_and_goes_on(tiny_cache, tmp_path):
    from semedit.models.evaluator import ToonEvaluator
    from semedit.models.toon64 import TOON64_DIR
    from semedit.training.evaluator import FaceAugment, train_evaluator
    from semedit.world import CATEGORICAL

    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    run = tmp_path / "run"
    train_evaluator(tiny_cache, TOON64_DIR / "vae", run, tmp_path / "out", cfg, eval_n=4)
    recon = np.load(next(run.glob("recon_train_*.npy")))
    renders = RenderCache(tiny_cache / "train").arrays["image"]
    assert recon.shape == renders.shape and recon.dtype == np.uint8 and not np.array_equal(recon, renders)
    cfg2 = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    report = train_evaluator(tiny_cache, TOON64_DIR / "vae", run, tmp_path / "out", cfg2, eval_n=4)  # resumes at 1
    assert report["steps"] == 2 and report["heldout_n"] == 4
    for judged in ("renders", "vae_reconstructions"):
        assert "costume" in report[judged]["accuracy"] and set(report[judged]["accuracy"]) <= set(CATEGORICAL)
        assert all(0 <= v <= 1 for v in report[judged]["accuracy"].values())
    assert (tmp_path / "out" / "diffusion_pytorch_model.safetensors").exists()
    # --init-from goes on from given weights: one tiny step leaves the committed evaluator as it was
    cfg3 = TrainConfig(steps=1, batch_size=4, lr=1e-7, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    train_evaluator(tiny_cache, TOON64_DIR / "vae", tmp_path / "run_init", tmp_path / "out_init", cfg3, eval_n=4,
                    init_from=TOON64_DIR / "evaluator")
    went_on, committed = (ToonEvaluator.from_pretrained(d).state_dict()
                          for d in (tmp_path / "out_init", TOON64_DIR / "evaluator"))
    assert went_on.keys() == committed.keys()  # its face branch kept (adding one: test_face_crop_...)
    assert all(torch.allclose(went_on[k].float(), committed[k].float(), atol=1e-3) for k in committed)
    # face_only: a real step moves the face branch and leaves every other weight exactly as it was
    cfg4 = TrainConfig(steps=1, batch_size=4, lr=1e-2, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    train_evaluator(tiny_cache, TOON64_DIR / "vae", tmp_path / "run_face", tmp_path / "out_face", cfg4, eval_n=4,
                    init_from=TOON64_DIR / "evaluator", face_only=True, face_augment=FaceAugment())
    face = ToonEvaluator.from_pretrained(tmp_path / "out_face").state_dict()
    trunk = [k for k in committed if not k.startswith("face_")]
    assert len(trunk) > 20 and all(torch.equal(face[k], committed[k]) for k in trunk)
    assert any(not torch.equal(face[k], went_on[k]) for k in face if k.startswith("face_"))


def test_face_crop_aligns_the_face_at_its_pose():
    """The face branch reads the face upright and at one size wherever the head sits and however it tilts."""
    from semedit.models.evaluator import ToonEvaluator
    from semedit.training.evaluator import with_face_branch
    from semedit.world import ToonRecord, render

    torch.manual_seed(0)
    ev = ToonEvaluator(channels=(8, 16, 16), face_attributes=("expression", "gaze"))
    base = ToonRecord(presentation="man", expression="smiling", mouth="closed", background="plain")
    moved = base.replace(head_x=3.5, head_y=-2.0, head_tilt=10.0, head_scale=1.08)
    x = torch.from_numpy(np.stack([render(r).image for r in (base, moved)])).permute(0, 3, 1, 2).float() / 127.5 - 1
    pose = ev.targets([base, moved])["pose"]
    crops = ev.face_crop(x, pose)
    assert crops.shape == (2, 3, 48, 48)
    aligned = (crops[0] - crops[1]).abs().mean()
    at_the_wrong_pose = (crops[0] - ev.face_crop(x[1:], pose[:1])[0]).abs().mean()
    assert aligned < 0.1 and aligned < at_the_wrong_pose / 4, (aligned, at_the_wrong_pose)
    # training's jitter (px, px, relative scale, degrees) moves the crop exactly as the moved pose does
    jitter = torch.tensor([[moved.head_x - base.head_x, moved.head_y - base.head_y,
                            moved.head_scale / base.head_scale - 1, moved.head_tilt - base.head_tilt]])
    assert torch.allclose(ev.face_crop(x[1:], pose[:1], jitter), ev.face_crop(x[1:], pose[1:]), atol=1e-4)
    # a mirrored crop changes the face branch's reading of that image only, and nothing the trunk reads
    with torch.no_grad():
        plain, mirrored = ev(x), ev(x, face_flip=torch.tensor([True, False]))
    assert not torch.allclose(plain["expression"][0], mirrored["expression"][0])
    assert torch.equal(plain["expression"][1], mirrored["expression"][1]) and torch.equal(plain["pose"], mirrored["pose"])
    # a trunk given a face branch predicts everything else exactly as before
    trunk = ToonEvaluator(channels=(8, 16, 16), pooling="attention")
    with torch.no_grad():
        a, b = trunk(x), with_face_branch(trunk, ("expression", "gaze"))(x)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k not in ("expression", "gaze"))
    assert not torch.equal(a["expression"], b["expression"])


@pytest.mark.parametrize("pooling,face", [("mean", ()), ("attention", ()), ("attention", ("expression", "gaze"))])
def test_evaluator_heads_and_round_trip(tmp_path, pooling, face):
    from semedit.models.evaluator import ToonEvaluator, segmentation_accuracy
    from semedit.world import SEG_CLASSES, render, sample_record

    torch.manual_seed(0)
    ev = ToonEvaluator(channels=(8, 16, 16), pooling=pooling, face_attributes=face)
    recs = [sample_record(i) for i in range(3)]
    renders = [render(r) for r in recs]
    images = np.stack([r.image for r in renders])
    seg = torch.from_numpy(np.stack([r.seg for r in renders]))
    out = ev(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert out["seg"].shape == (3, len(SEG_CLASSES), 64, 64) and out["pose"].shape == (3, 4)
    loss = ev.loss(out, ev.targets(recs), seg)
    assert torch.isfinite(loss) and loss > ev.loss(out, ev.targets(recs))  # the segmentation term counts
    ev.save_pretrained(tmp_path / "ev")
    ev2 = ToonEvaluator.from_pretrained(tmp_path / "ev")
    with torch.no_grad():  # every head's logits, not only their argmax (the saved config sorts its keys)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        a, b = ev(x), ev2(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(ev.segment(images), ev2.segment(images))
    assert ev.predict(images) == ev2.predict(images)
    assert segmentation_accuracy(seg.numpy(), seg.numpy()) == 1.0
    assert segmentation_accuracy(seg.numpy(), seg.numpy() + 1, seg.numpy() == 0) == 0.0


def test_caption_labels_name_what_the_caption_says():
    from semedit.training.clip import caption_labels
    from semedit.world import CATEGORICAL, sample_record

    rng = np.random.default_rng(0)
    rec = sample_record(3)
    labels = caption_labels(rec, ("presentation", "expression"), rng)
    assert labels["expression"] == CATEGORICAL["expression"].index(rec.expression)
    assert "hair_colour" not in labels and "eye_colour" not in labels and "glasses" not in labels
    full = caption_labels(rec, ("presentation", "hair", "eye_colour", "face_shape", "glasses"), rng)
    assert {"hair_colour", "eye_colour", "face_shape", "glasses"} <= set(full)
    assert all(CATEGORICAL[a][i] == getattr(rec, a) for a, i in full.items())


def test_clip_attribute_losses_train_resume_and_save_plain_clip(tiny_cache, tmp_path):
    from transformers import CLIPModel

    from semedit.models.toon64 import TOON64_DIR
    from semedit.training.clip import AttributeHeads, train_clip

    heads = AttributeHeads(8)
    pooled = torch.randn(2, 8)
    labels = [{"expression": 2}, {"expression": 0, "glasses": 1}]
    ce = torch.nn.functional.cross_entropy
    by_hand = (ce(heads.heads["expression"](pooled), torch.tensor([2, 0]), reduction="sum")
               + ce(heads.heads["glasses"](pooled[1:]), torch.tensor([1]))) / 3
    assert torch.allclose(heads.loss(pooled, labels), by_hand)

    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    run = tmp_path / "run"
    train_clip(tiny_cache, TOON64_DIR / "tokenizer", run, tmp_path / "out", cfg, eval_n=4, text_attribute_weight=1.0)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["text_attribute_loss"] > 0
    assert any(k.startswith("text_heads.") for k in load_file(run / "checkpoint" / "model.safetensors"))
    cfg2 = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup=1, checkpoint_every=1, log_every=1, seed=0)
    report = train_clip(tiny_cache, TOON64_DIR / "tokenizer", run, tmp_path / "out", cfg2, eval_n=4,
                        text_attribute_weight=1.0)  # resumes at step 1, heads included
    assert report["steps"] == 2
    clip = CLIPModel.from_pretrained(tmp_path / "out" / "clip")  # the heads are not part of the saved CLIP
    assert not any("heads" in k for k in clip.state_dict())

    # going on from that CLIP with the text tower frozen and the image-side loss: only the vision side moves
    report = train_clip(tiny_cache, TOON64_DIR / "tokenizer", tmp_path / "run2", tmp_path / "out2", cfg, eval_n=4,
                        image_attribute_weight=1.0, init_from=tmp_path / "out" / "clip", freeze_text_tower=True,
                        write_text_encoder=False, every_value_negatives=True)
    log = [json.loads(line) for line in (tmp_path / "run2" / "log.jsonl").read_text().splitlines()]
    assert log[0]["image_attribute_loss"] > 0 and "text_attribute_loss" not in log[0]
    after = CLIPModel.from_pretrained(tmp_path / "out2" / "clip")
    before, moved = clip.state_dict(), after.state_dict()
    assert all(torch.equal(before[k], moved[k]) for k in before if k.startswith("text_model."))
    assert not torch.equal(before["vision_model.post_layernorm.weight"], moved["vision_model.post_layernorm.weight"])
    with pytest.raises(ValueError, match="freeze_text_tower needs init_from"):
        train_clip(tiny_cache, TOON64_DIR / "tokenizer", tmp_path / "run3", tmp_path / "out3", cfg,
                   freeze_text_tower=True)


def test_hard_negatives_change_one_attribute_the_caption_names():
    from semedit.training.clip import hard_negatives
    from semedit.world import CATEGORICAL, describe, sample_record

    for i in range(30):
        rec = sample_record(np.random.default_rng(i))
        one_fields, one = hard_negatives(rec, np.random.default_rng(i))
        fields, every = hard_negatives(rec, np.random.default_rng(i), every_value=True)
        assert len(one) == 1 and len(every) >= 1
        for negs, f in ((one, one_fields), (every, fields)):
            captions = [describe(n, f) for n in negs]
            assert describe(rec, f) not in captions and len(set(captions)) == len(captions)
            changed = {a for n in negs for a in CATEGORICAL if getattr(n, a) != getattr(rec, a)}
            assert len(changed) == 1  # one attribute, the same for every negative
        attr = changed.pop()
        if attr in ("expression", "glasses"):  # every other value the world allows, none left out
            assert {getattr(n, attr) for n in every} == set(CATEGORICAL[attr]) - {getattr(rec, attr)}


def test_image_labels_are_what_the_image_shows():
    from semedit.training.clip import image_labels
    from semedit.world import CATEGORICAL, sample_record

    rec = sample_record(3).replace(eyes="closed", costume="sheep")
    labels = image_labels(rec)
    assert not {"gaze", "eye_colour", "hair_colour", "hair_style", "shirt_colour"} & set(labels)
    assert {"expression", "glasses", "mouth", "costume"} <= set(labels)
    assert all(CATEGORICAL[a][i] == getattr(rec, a) for a, i in labels.items())


def test_contrastive_loss_with_negatives():
    from semedit.training.clip import contrastive_loss_with_negatives

    torch.manual_seed(0)
    logits = torch.randn(4, 4)
    clip_loss = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(4))
                       + torch.nn.functional.cross_entropy(logits.T, torch.arange(4)))
    assert torch.allclose(contrastive_loss_with_negatives(logits), clip_loss)  # no negatives: CLIP's own loss
    # a hard negative that scores high for image 0 raises the loss; the text->image half ignores it
    hard = torch.cat([logits, torch.tensor([[10.0], [0], [0], [0]])], 1)
    assert contrastive_loss_with_negatives(hard) > clip_loss

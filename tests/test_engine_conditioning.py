import pytest
import torch

from semedit.engine.conditioning import Condition, encode_text, predict_noise
from semedit.models.backbone import load_backbone
from tests.helpers import tiny_sd_folder


def test_guidance_branches_in_one_batch_equal_separate_calls(tmp_path):
    from diffusers import ControlNetModel

    tiny_sd_folder(tmp_path / "sd")
    bb = load_backbone(str(tmp_path / "sd"))
    torch.manual_seed(1)
    cn = ControlNetModel.from_unet(bb.unet, conditioning_embedding_out_channels=(16, 32)).eval()
    with torch.no_grad():  # a fresh ControlNet outputs zero; perturb it so the test can see it
        for p in [*cn.controlnet_down_blocks.parameters(), *cn.controlnet_mid_block.parameters()]:
            p.normal_(0, 0.1)
    bb.controlnets["pose"] = cn
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    null, text = encode_text(bb, ["", "a cartoon woman, laughing"]).chunk(2)
    pose = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    conds = [Condition(null), Condition(text), Condition(text, {"pose": (pose, 0.8)})]
    with torch.no_grad():
        batched = predict_noise(bb, x, 301, conds)
        t = torch.full((2,), 301)
        ref0 = bb.unet(x, t, encoder_hidden_states=null.expand(2, -1, -1)).sample
        ref1 = bb.unet(x, t, encoder_hidden_states=text.expand(2, -1, -1)).sample
        d, m = cn(x, t, encoder_hidden_states=text.expand(2, -1, -1), controlnet_cond=pose.expand(2, -1, -1, -1),
                  conditioning_scale=0.8, return_dict=False)
        ref2 = bb.unet(x, t, encoder_hidden_states=text.expand(2, -1, -1), down_block_additional_residuals=d,
                       mid_block_additional_residual=m).sample
    for got, ref in zip(batched, (ref0, ref1, ref2)):
        assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(ref1, ref2, atol=1e-3)  # the ControlNet does act


def test_decoder_features_are_hooked_and_released(tmp_path):
    from semedit.engine.features import decoder_features, pixel_features

    tiny_sd_folder(tmp_path / "sd")
    bb = load_backbone(str(tmp_path / "sd"))
    x = torch.randn(1, 4, 8, 8)
    text = encode_text(bb, ["a cartoon man"])
    with torch.no_grad(), decoder_features(bb.unet, [0, 1]) as store:
        bb.unet(x, 10, encoder_hidden_states=text)
    feats = pixel_features(store, (16, 16))
    assert feats.shape == (1, 32 + 32, 16, 16)
    assert all(len(b._forward_hooks) == 0 for b in bb.unet.up_blocks)  # hooks removed
    with pytest.raises(ValueError, match="do not exist"):
        with decoder_features(bb.unet, [5]):
            pass


def test_unipc_sampling_matches_the_diffusers_pipeline(tmp_path):
    from diffusers import UniPCMultistepScheduler

    from semedit.engine.conditioning import GuidedNoise
    from semedit.engine.ddim import scheduler_sample

    tiny_sd_folder(tmp_path / "sd")
    bb = load_backbone(str(tmp_path / "sd"))
    pipe = bb.pipeline()
    pipe.scheduler = UniPCMultistepScheduler.from_config(bb.scheduler_config)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = pipe("a cartoon man", latents=x.clone(), num_inference_steps=6, guidance_scale=4.0,
               output_type="latent").images
    sched = UniPCMultistepScheduler.from_config(bb.scheduler_config)
    sched.set_timesteps(6)
    null, text = encode_text(bb, ["", "a cartoon man"]).chunk(2)
    with torch.no_grad():
        ours = scheduler_sample(GuidedNoise(bb, Condition(null), Condition(text), 4.0), x, sched)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_control_map_converts_layouts_as_in_training(tiny):
    import numpy as np

    from semedit.engine.conditioning import control_map
    from semedit.models.images import control_tensor

    scribble = (np.random.default_rng(0).random((16, 16)) > 0.5).astype(np.uint8) * 255
    m = control_map(tiny, scribble)
    assert m.shape == (1, 3, 16, 16) and m.dtype == tiny.dtype and set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m, control_map(tiny, np.repeat(scribble[..., None], 3, axis=2)))
    assert torch.equal(m, control_tensor(scribble[None]))
    with pytest.raises(ValueError, match="uint8"):
        control_map(tiny, scribble.astype(np.float32))

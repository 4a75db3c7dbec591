"""The speed work's correctness: the engine's text-to-image is diffusers' pipeline's image, the fast
network path keeps the backbone and its outputs (within bf16's tolerance) and says so in the result."""

import numpy as np
import torch

from semedit.engine.conditioning import Condition, encode_text, predict_noise
from semedit.engine.features import decoder_features
from semedit.engine.generate import generate
from semedit.models.fast import FastNetwork, accelerated


def test_engine_text_to_image_is_the_diffusers_pipelines_image(tiny):
    ours = generate(tiny, "a cartoon man", steps=4, guidance_scale=5.0, seed=3)
    ref = np.asarray(tiny.pipeline()("a cartoon man", num_inference_steps=4, guidance_scale=5.0, height=16, width=16,
                                      generator=torch.Generator().manual_seed(3)).images[0])
    # the same latents up to float rounding (DDIM's coefficients are float64 here, float32 in diffusers)
    assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_engine_text_to_image_with_a_controlnet_is_the_controlnet_pipelines_image(tiny):
    from diffusers import ControlNetModel
    from PIL import Image

    torch.manual_seed(1)
    cn = ControlNetModel.from_unet(tiny.unet, conditioning_embedding_out_channels=(16, 32)).eval()
    with torch.no_grad():  # a fresh ControlNet outputs zero; perturb it so that it acts
        for p in [*cn.controlnet_down_blocks.parameters(), *cn.controlnet_mid_block.parameters()]:
            p.normal_(0, 0.1)
    tiny.controlnets["pose"] = cn
    layout = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    ours = generate(tiny, "a cartoon man", steps=3, seed=1, layouts={"pose": layout})
    ref = np.asarray(tiny.pipeline("pose")("a cartoon man", image=Image.fromarray(layout), num_inference_steps=3,
                                           height=16, width=16, generator=torch.Generator().manual_seed(1)).images[0])
    plain = generate(tiny, "a cartoon man", steps=3, seed=1)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert np.abs(ours.astype(int) - plain.astype(int)).max() > 1  # the layout is followed


def _eps(bb, x, t=301):
    null, text = encode_text(bb, ["", "a cartoon woman, laughing"]).chunk(2)
    return predict_noise(bb, x, t, [Condition(null), Condition(text)])


def test_bf16_network_calls_stay_within_tolerance_and_leave_the_backbone_alone(tiny):
    before = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    fast = accelerated(tiny, "bf16")
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, got = _eps(tiny, x), _eps(fast, x)
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32
        assert (g - r).abs().max() < 0.05 * r.abs().max()  # bf16 keeps 8 bits of mantissa
        assert not torch.equal(g, r)  # the bf16 copy did run
    assert tiny.unet.dtype == torch.float32 and fast.unet.config is tiny.unet.config
    assert all(torch.equal(v, before[k]) for k, v in tiny.unet.state_dict().items())


def test_gradients_and_feature_hooks_take_the_eager_path(tiny):
    fast = accelerated(tiny, "bf16")
    assert isinstance(fast.unet, FastNetwork)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = encode_text(tiny, ["a cartoon man"])
    with torch.enable_grad():
        v = x.clone().requires_grad_(True)
        fast.unet(v, 10, encoder_hidden_states=text).sample.sum().backward()
        eager = x.clone().requires_grad_(True)
        tiny.unet(eager, 10, encoder_hidden_states=text).sample.sum().backward()
    assert torch.equal(v.grad, eager.grad)
    with torch.no_grad(), decoder_features(fast.unet, [0]) as store:  # hooks on the eager module's blocks
        out = fast.unet(x, 10, encoder_hidden_states=text).sample
    assert store and torch.equal(out, tiny.unet(x, 10, encoder_hidden_states=text).sample)


def test_the_result_says_how_its_networks_ran(tiny):
    from semedit.methods import EditRequest, make_config, run_edit

    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    request = EditRequest(image, "a cartoon woman, laughing", "a cartoon woman")
    config = make_config("sdedit", steps=2, strength=1.0)
    eager = run_edit("sdedit", tiny, request, config)
    fast = run_edit("sdedit", accelerated(tiny, "bf16"), request, config)
    assert "networks" not in eager.provenance and fast.provenance["networks"] == "bf16"
    assert np.abs(fast.image.astype(int) - eager.image.astype(int)).mean() < 8


def test_fast_backbones_are_cached_apart_from_the_default(tiny_folder):
    from semedit.models.fast import native_bf16
    from semedit.service import clear_backbones, get_backbone

    try:
        plain, fast = get_backbone(str(tiny_folder)), get_backbone(str(tiny_folder), fast=True)
        precision = "bf16" if native_bf16(plain.device) else "fp32"
        assert plain.networks == "eager" and fast.networks == f"{precision}, compiled"
        assert get_backbone(str(tiny_folder), fast=True) is fast and fast.unet.eager is plain.unet
    finally:
        clear_backbones()


def test_fast_means_bf16_only_where_the_device_computes_it_natively(tiny, monkeypatch):
    """Emulated bfloat16 (a CPU without AVX-512 BF16 or AMX) is slower than float32, so `--fast` compiles in
    float32 there."""
    import semedit.models.fast as fast

    for native, precision in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(fast, "native_bf16", lambda device, native=native: native)
        chosen = fast.fast_backbone(tiny)
        assert chosen.networks == f"{precision}, compiled" and chosen.unet.fast_dtype == fast.PRECISIONS[precision]

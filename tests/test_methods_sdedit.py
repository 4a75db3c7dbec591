import numpy as np
import pytest
import torch

from semedit.methods import REGISTRY, EditRequest, run_edit
from semedit.methods.sdedit import SDEditConfig


def _image():
    return (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)


def test_sdedit_agrees_with_diffusers_img2img(tiny):
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    from semedit.engine.conditioning import encode_image

    cfg = SDEditConfig(strength=0.6, steps=10, guidance_scale=5.0)
    req = EditRequest(_image(), "a cartoon woman, laughing")
    res = run_edit("sdedit", tiny, req, cfg, seed=3)
    pipe = StableDiffusionImg2ImgPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer,
                                          unet=tiny.unet, scheduler=DDIMScheduler.from_config(tiny.scheduler_config),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    with torch.no_grad():
        z0 = encode_image(tiny, req.image)  # scaled latents: img2img takes 4-channel input as latents
    ref = pipe(req.target_prompt, image=z0, strength=0.6, num_inference_steps=10, guidance_scale=5.0,
               output_type="latent", generator=torch.Generator().manual_seed(3)).images
    assert torch.allclose(res.intermediates["latents"], ref, atol=1e-4)
    assert res.unet_evaluations == 2 * 6 and res.provenance["method"] == "sdedit"
    assert res.image.shape == (16, 16, 3) and res.image.dtype == np.uint8
    assert REGISTRY["sdedit"].config is SDEditConfig


def test_requests_are_validated(tiny):
    with pytest.raises(ValueError, match="needs 16x16"):
        run_edit("sdedit", tiny, EditRequest(np.zeros((32, 32, 3), np.uint8), "x"))
    with pytest.raises(ValueError, match="mask is empty"):
        run_edit("diffedit", tiny, EditRequest(_image(), "x", mask=np.zeros((16, 16))))
    with pytest.raises(ValueError, match="sdedit takes no mask"):  # refused, not ignored
        run_edit("sdedit", tiny, EditRequest(_image(), "x", mask=np.ones((16, 16))))
    with pytest.raises(ValueError, match="nothing to edit"):
        run_edit("sdedit", tiny, EditRequest(_image(), "x", source_prompt="x"))
    with pytest.raises(ValueError, match="target prompt is empty"):
        run_edit("diffedit", tiny, EditRequest(_image(), " ", source_prompt="x"))
    with pytest.raises(ValueError, match="runs no denoising step"):
        SDEditConfig(steps=1, strength=0.5)
    with pytest.raises(ValueError, match="takes no layout conditions"):
        run_edit("sdedit", tiny, EditRequest(_image(), "x", controls={"depth": np.zeros((16, 16, 3), np.uint8)}))
    with pytest.raises(ValueError, match="strength"):
        SDEditConfig(strength=1.5)

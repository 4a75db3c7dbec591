import numpy as np
import torch

from semedit.methods import EditRequest, run_edit
from semedit.methods.diffedit import DiffEditConfig



def _request():
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    return EditRequest(img, "a cartoon woman, laughing", source_prompt="a cartoon woman, neutral expression")


def test_diffedit_agrees_with_diffusers_pipeline(tiny):
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    from semedit.engine.conditioning import encode_image

    req = _request()
    cfg = DiffEditConfig(steps=10, inversion_eps_timestep="next", blend_with="previous")  # diffusers' conventions
    res = run_edit("diffedit", tiny, req, cfg, seed=5)
    pipe = StableDiffusionDiffEditPipeline(
        vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer, unet=tiny.unet,
        scheduler=DDIMScheduler.from_config(tiny.scheduler_config),
        inverse_scheduler=DDIMInverseScheduler.from_config(tiny.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        z0 = encode_image(tiny, req.image)  # 4-channel input is taken as latents by the pipeline
    mask = pipe.generate_mask(image=z0, source_prompt=req.source_prompt, target_prompt=req.target_prompt,
                              num_inference_steps=10, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(mask[0], res.intermediates["mask_latent"][0, 0].numpy())
    assert 0 < mask.mean() < 1
    inv = pipe.invert(prompt=req.source_prompt, image=z0, num_inference_steps=10, inpaint_strength=0.8,
                      guidance_scale=1.0).latents[0]
    ours = res.intermediates["inverted_latents"]
    start = min(ours)
    assert len(inv) == 10 - start == 8
    for k in range(len(inv)):
        assert torch.allclose(inv[k], ours[start + k][0], atol=1e-4), k
    out = pipe(prompt=req.target_prompt, mask_image=mask, image_latents=inv[None], num_inference_steps=10,
               inpaint_strength=0.8, guidance_scale=7.5, output_type="latent").images
    assert torch.allclose(out, res.intermediates["latents"], atol=1e-4)
    # U-Net evaluations: 3 x 10 mask samples, 8 inversion steps, 8 guided decoding steps
    assert res.unet_evaluations == 30 + 8 + 16


def test_aligned_blending_keeps_the_outside_exactly(tiny):
    req = _request()
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 1
    req.mask = mask
    res = run_edit("diffedit", tiny, req, DiffEditConfig(steps=10), seed=0)
    z, z0 = res.intermediates["latents"], res.intermediates["inverted_latents"][10]
    assert torch.equal(z[..., :4], z0[..., :4])  # outside: the encoded input itself at the last level
    assert not torch.allclose(z[..., 4:], z0[..., 4:])
    assert res.unet_evaluations == 8 + 16  # no mask estimation when a mask is given

"""LayerDiffusion (`layered`) and the Imagic baseline on the engine's per-image optimisation: the losses fall,
the code paths reduce as the paper's equations say, nothing leaks into the shared backbone, bad masks and
prompts are clear errors."""

import numpy as np
import pytest
import torch

from semedit.engine.conditioning import Condition, GuidedNoise, encode_image, encode_text
from semedit.engine.ddim import alphas_cumprod, ddim_sample, make_schedule, seeded_noise
from semedit.engine.finetune import DenoisingTarget, denoising_losses, fine_tune, optimise_embeddings
from semedit.methods import EditRequest, make_config, run_edit
from semedit.methods.layered import decompose

FAST = dict(embedding_steps=3, finetune_steps=2, steps=4)


def _image(seed=0):
    return (np.random.default_rng(seed).random((16, 16, 3)) * 255).astype(np.uint8)


def _subject():
    m = np.zeros((16, 16), bool)
    m[4:12, 4:12] = True
    return m


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    """A tiny random SAM (transformers' SamModel and its processor) saved as a user's folder would be."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (SamMaskDecoderConfig, SamPromptEncoderConfig,
                                                           SamVisionConfig)

    torch.manual_seed(0)
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=16, output_channels=8, num_hidden_layers=1, num_attention_heads=2,
                                      image_size=64, patch_size=8, mlp_dim=32, window_size=2, global_attn_indexes=[0],
                                      num_pos_feats=4),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=8, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=8, num_attention_heads=2, mlp_dim=16,
                                                 iou_head_hidden_dim=8))
    folder = tmp_path_factory.mktemp("sam")
    SamModel(config).save_pretrained(folder)
    SamProcessor(SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})).save_pretrained(
        folder)
    return str(folder)


def _fixed_loss(backbone, unet, emb, target):
    """The masked denoising loss at fixed timesteps and noise (the same draws before and after)."""
    with torch.no_grad():
        return float(sum(denoising_losses(unet, [target] * 8, emb.expand(8, -1, -1),
                                          alphas_cumprod(backbone.scheduler_config), torch.Generator().manual_seed(5))))


def test_layered_optimisation_and_fine_tuning_lower_their_masked_losses(tiny):
    z0 = encode_image(tiny, _image())
    mask = torch.zeros(1, 1, *z0.shape[-2:])
    mask[..., :4, :] = 1
    target = DenoisingTarget(z0, mask)
    e = encode_text(tiny, ["a cartoon woman"])
    e_hat, history = optimise_embeddings(tiny, e, [target], steps=40, lr=0.05, seed=0)
    assert len(history) == 40 and not torch.equal(e_hat, e)
    assert _fixed_loss(tiny, tiny.unet, e_hat, target) < _fixed_loss(tiny, tiny.unet, e, target)
    tuned, ft_history = fine_tune(tiny, e_hat, [target], steps=40, lr=1e-3, seed=0)
    assert len(ft_history) == 40 and tuned.unet is not tiny.unet
    assert _fixed_loss(tiny, tuned.unet, e_hat, target) < _fixed_loss(tiny, tiny.unet, e_hat, target)
    # outside the mask the loss has no gradient: optimising a target masked to nothing changes nothing
    unchanged, _ = optimise_embeddings(tiny, e, [DenoisingTarget(z0, torch.zeros_like(mask))], steps=3, lr=0.05)
    assert torch.equal(unchanged, e)


@pytest.mark.parametrize("lora_rank", [None, 2])
def test_edits_never_change_the_shared_backbone(tiny, sam_folder, lora_rank):
    weights = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    probe = (torch.randn(1, 4, 2, 2), encode_text(tiny, ["x"]))
    before = tiny.unet(*probe[:1], 10, encoder_hidden_states=probe[1]).sample
    config = make_config("layered", **FAST, finetune_lr=1e-2, lora_rank=lora_rank, sam=sam_folder)
    request = EditRequest(_image(), "a cartoon woman, laughing, on a beach", mask=_subject())
    first = run_edit("layered", tiny, request, config, seed=1)
    assert first.provenance["config"]["lora_rank"] == lora_rank
    assert all(torch.equal(v, weights[k]) for k, v in tiny.unet.state_dict().items())
    assert set(tiny.unet.state_dict()) == set(weights)  # no adapter left behind
    assert torch.equal(tiny.unet(*probe[:1], 10, encoder_hidden_states=probe[1]).sample, before)
    again = run_edit("layered", tiny, request, config, seed=1)  # the next edit starts from the same weights
    assert np.array_equal(first.image, again.image)
    imagic = make_config("imagic", embedding_steps=2, finetune_steps=2, finetune_lr=1e-2, steps=4, lora_rank=lora_rank)
    run_edit("imagic", tiny, EditRequest(_image(), "a cartoon woman, laughing"), imagic)
    assert all(torch.equal(v, weights[k]) for k, v in tiny.unet.state_dict().items())


def test_no_fine_tuning_and_alpha_one_is_sampling_under_e_a_hat(tiny, sam_folder):
    config = make_config("layered", embedding_steps=3, finetune_steps=0, alpha=1.0, steps=5, guidance_scale=3.0,
                         sam=sam_folder)
    request = EditRequest(_image(), "a cartoon woman, laughing, on a beach", mask=_subject())
    result = run_edit("layered", tiny, request, config, seed=2)
    e_a_hat = result.intermediates["embeddings"][:1]
    null = encode_text(tiny, [""])
    schedule = make_schedule(tiny.scheduler_config, 5)
    x_T = seeded_noise(result.intermediates["latents"].shape, 2, null)
    with torch.no_grad():
        expected = ddim_sample(GuidedNoise(tiny, Condition(null), Condition(e_a_hat), 3.0), x_T, schedule)
    assert torch.allclose(result.intermediates["latents"], expected, atol=1e-6)
    assert result.intermediates["guidance_schedule"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]  # Eq. 8's alternation
    assert result.intermediates["finetune_losses"].numel() == 0


def test_every_network_call_is_counted_with_its_phase(tiny, sam_folder):
    phases = []
    config = make_config("layered", **FAST, sam=sam_folder)
    request = EditRequest(_image(), "a cartoon woman, laughing, on a beach", mask=_subject())
    result = run_edit("layered", tiny, request, config, seed=0,
                      before_unet=lambda calls: phases.append(calls.phase))
    # O_t (CFG: 2 per step), Eq. 2 (2 layers per step), Eq. 4-6 (2 per step), Eq. 8 (CFG: 2 per step)
    assert result.unet_evaluations == 2 * 4 + 2 * 3 + 2 * 2 + 2 * 4
    assert list(dict.fromkeys(phases)) == ["generation", "layered optimisation (Eq. 2)",
                                           "layered fine-tuning (Eq. 4-6)", "iterative guidance (Eq. 8)"]
    assert result.intermediates["embedding_losses"].shape == (3, 2)
    assert result.intermediates["finetune_losses"].shape == (2, 2)
    assert result.intermediates["background_image"].shape == (16, 16, 3)


def test_a_reference_background_replaces_the_target_image(tiny, sam_folder):
    reference = _image(7)
    config = make_config("layered", **FAST, sam=sam_folder)
    request = EditRequest(_image(), "a cartoon woman, on a beach", mask=_subject(), reference_image=reference)
    result = run_edit("layered", tiny, request, config, seed=0)
    assert np.array_equal(result.intermediates["background_image"], reference)
    assert result.unet_evaluations == 2 * 3 + 2 * 2 + 2 * 4  # no O_t is generated


def test_l_obj_on_the_target_image_fine_tunes_towards_o_t(tiny, sam_folder):
    """The paper's letters (L_obj inside M_t): L_obj's term reconstructs O_t, so both terms see the same image;
    it needs O_t, so a reference background is refused."""
    config = make_config("layered", **FAST, l_obj_image="target", sam=sam_folder)
    request = EditRequest(_image(), "a cartoon woman, on a beach", mask=_subject())
    target = run_edit("layered", tiny, request, config, seed=0)
    default = run_edit("layered", tiny, request, make_config("layered", **FAST, sam=sam_folder), seed=0)
    assert target.unet_evaluations == default.unet_evaluations
    assert torch.equal(target.intermediates["embedding_losses"], default.intermediates["embedding_losses"])
    assert not torch.equal(target.intermediates["finetune_losses"], default.intermediates["finetune_losses"])
    with pytest.raises(ValueError, match="no O_t is made"):
        run_edit("layered", tiny, EditRequest(_image(), "a cartoon woman, on a beach", mask=_subject(),
                                              reference_image=_image(3)), config)


def test_bad_masks_prompts_and_inputs_are_clear_errors(tiny, sam_folder):
    config = make_config("layered", **FAST, sam=sam_folder)
    text = "a cartoon woman, on a beach"
    with pytest.raises(ValueError, match="mask is .*must be 16x16"):
        run_edit("layered", tiny, EditRequest(_image(), text, mask=np.ones((8, 8))), config)
    with pytest.raises(ValueError, match="mask is empty"):
        run_edit("layered", tiny, EditRequest(_image(), text, mask=np.zeros((16, 16))), config)
    with pytest.raises(ValueError, match="no pixel classifiers.*SAM"):  # nothing to find the subject with
        run_edit("layered", tiny, EditRequest(_image(), text, mask=_subject()), make_config("layered", **FAST))
    with pytest.raises(ValueError, match="reference image must be uint8 16x16x3"):
        run_edit("layered", tiny, EditRequest(_image(), text, reference_image=np.zeros((8, 8, 3), np.uint8)), config)
    with pytest.raises(ValueError, match="cannot split"):
        run_edit("layered", tiny, EditRequest(_image(), "a cartoon woman laughing"), config)
    with pytest.raises(ValueError, match="diffedit does not edit in layers.*layered"):
        run_edit("diffedit", tiny, EditRequest(_image(), text, "x", background_prompt="a beach"))
    with pytest.raises(ValueError, match="alpha must be in"):
        make_config("layered", alpha=1.5)


def test_the_target_splits_into_subject_and_background():
    assert decompose("the same woman, laughing, in a santa costume, on a beach") == (
        "the same woman, laughing, in a santa costume", "on a beach")
    assert decompose("a cartoon man, under a night sky") == ("a cartoon man", "under a night sky")
    with pytest.raises(ValueError, match="cannot split"):
        decompose("a cartoon man, laughing")


def test_layered_on_toon64_with_its_pixel_classifiers(toon64):
    from semedit.world import layer_captions, render, sample_record

    record = sample_record(11)
    edited = record.replace(costume="royal", background="beach")
    object_prompt, background_prompt = layer_captions(edited)
    assert "beach" in background_prompt and "beach" not in object_prompt and "palace" in object_prompt
    request = EditRequest(render(record).image, f"{object_prompt}, on a beach", object_prompt=object_prompt,
                          background_prompt=background_prompt)
    result = run_edit("layered", toon64, request, make_config("layered", **FAST), seed=0)
    subject = result.intermediates["subject_input"] > 0
    truth = render(record).seg > 0
    assert (subject == truth).mean() > 0.9  # the classifiers find the person
    assert result.provenance["object_prompt"] == object_prompt
    assert result.image.shape == (64, 64, 3)

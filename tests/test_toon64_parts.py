"""The toon-64 parts trained so far (committed weights) load and do their job."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from semedit.models.toon64 import TOON64_DIR
from semedit.models.text import image_features, text_features, tokenize
from semedit.models.vae import reconstruct
from semedit.training.vae import heldout_psnr as psnr
from semedit.world import ToonRecord, captions, record_seed, render, sample_record


def test_vae_reconstructs_world_renders():
    vae = AutoencoderKL.from_pretrained(TOON64_DIR / "vae", torch_dtype=torch.float32)
    images = np.stack([render(sample_record(record_seed(99, i))).image for i in range(8)])
    assert psnr(reconstruct(vae, images), images).mean() > 25.0
    with torch.no_grad():
        z = vae.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
    assert 0.5 < (z * vae.config.scaling_factor).std() < 2.0  # measured scale: unit-ish latents


def test_clip_matches_costume_and_background_and_text_tower():
    clip = CLIPModel.from_pretrained(TOON64_DIR / "clip", torch_dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(TOON64_DIR / "tokenizer")
    recs = [ToonRecord(costume="santa", background="beach"), ToonRecord(costume="sheep", background="night"),
            ToonRecord(costume="royal", background="forest")]
    images = np.stack([render(r).image for r in recs])
    with torch.no_grad():
        img = image_features(clip, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
        txt = text_features(clip, tokenize(tok, [captions(r)["costume"] + ", " + captions(r)["scene"]
                                                 for r in recs]))
        assert ((img @ txt.T).argmax(1) == torch.arange(3)).all()
        text_encoder = CLIPTextModel.from_pretrained(TOON64_DIR / "text_encoder", torch_dtype=torch.float32)
        ids = tok(["a cartoon woman, santa claus costume"], return_tensors="pt").input_ids
        assert torch.allclose(text_encoder(ids)[0], clip.text_model(ids)[0], atol=1e-5)


def test_clip_score_and_direction_follow_the_caption():
    from transformers import CLIPProcessor

    from semedit.eval.clip_metrics import clip_score, directional_similarity
    from semedit.world import describe

    clip = CLIPModel.from_pretrained(TOON64_DIR / "clip", torch_dtype=torch.float32).eval()
    proc = CLIPProcessor.from_pretrained(TOON64_DIR / "clip")
    recs = [sample_record(record_seed(5, i)) for i in range(6)]
    images = np.stack([render(r).image for r in recs])
    texts = [describe(r) for r in recs]
    matched, shuffled = clip_score(clip, proc, images, texts), clip_score(clip, proc, images, texts[1:] + texts[:1])
    assert matched.mean() > shuffled.mean() + 20 and (matched >= 0).all()
    a = ToonRecord(background="plain", costume="normal")
    b = a.replace(background="beach", costume="santa")
    ia, ib = render(a).image[None], render(b).image[None]
    toward = directional_similarity(clip, proc, ia, ib, [describe(a)], [describe(b)])[0]
    away = directional_similarity(clip, proc, ia, ib, [describe(b)], [describe(a)])[0]
    assert toward > 0.3 and away == pytest.approx(-toward, abs=1e-5)

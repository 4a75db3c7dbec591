"""MCDM's own parts so far: new words in a prompt, the stochastic Karras sampler, the identity encoder's
training, and paired data generation (deterministic per index, the same whatever the number of processes)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semedit.engine.ddim import alphas_cumprod
from semedit.engine.karras import Churn, karras_sample, make_karras_schedule
from semedit.methods.mcdm.pairs import PairConfig, PairDirection, pair_items, read_pairs, write_pairs
from semedit.models.text import encode_prompts, encode_prompts_with_words

FAST = PairConfig(steps=2, identity=False)


def test_new_words_equal_the_same_embeddings_written_as_tokens(toon64):
    te, tok = toon64.text_encoder, toon64.tokenizer
    word = te.get_input_embeddings().weight[tok("cartoon", add_special_tokens=False).input_ids[0]]
    got = encode_prompts_with_words(te, tok, ["a woman, normal costume"], "woman", word.expand(1, 2, -1))
    assert torch.equal(got, encode_prompts(te, tok, ["a cartoon cartoon woman, normal costume"]))
    with pytest.raises(ValueError, match="no word 'man'"):
        encode_prompts_with_words(te, tok, ["a woman, normal costume"], "man", word.expand(1, 2, -1))


def test_new_words_carry_gradients(toon64):
    words = torch.zeros(1, 2, toon64.text_encoder.config.hidden_size, requires_grad=True)
    out = encode_prompts_with_words(toon64.text_encoder, toon64.tokenizer, ["a man, angry"], "man", words)
    out.sum().backward()
    assert words.grad is not None and words.grad.abs().sum() > 0


@pytest.mark.parametrize("churn", [Churn(s_churn=0.0), Churn()])
def test_karras_sampler_reaches_a_point_mass(churn):
    """With the exact denoiser of data concentrated at mu, EDM's sampler (with or without churn) ends at mu."""
    config = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    a = alphas_cumprod(config).float()
    mu = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)

    def eps(x, t):
        return (x - a[t].sqrt() * mu) / (1 - a[t]).sqrt()

    schedule = make_karras_schedule(config, 20)
    assert schedule.sigmas[0] > schedule.sigmas[-2] > schedule.sigmas[-1] == 0
    x = karras_sample(eps, torch.randn(1, 3, 1, 1, generator=torch.Generator().manual_seed(0)), schedule, churn,
                      torch.Generator().manual_seed(1))
    assert torch.allclose(x, mu, atol=0.02)


def test_directions_are_checked():
    assert PairDirection.parse("costume=santa") == PairDirection("costume", "normal", "santa")
    for bad in ("costume=pirate", "hair=red", "santa"):
        with pytest.raises(ValueError):
            PairDirection.parse(bad)


def test_pairs_do_not_depend_on_the_number_of_processes(toon64, tmp_path):
    directions = [PairDirection.parse("costume=santa"), PairDirection.parse("expression=angry")]
    shares = [(d.name, j) for k in range(2) for d, j in pair_items(directions, 3, k, 2)]
    assert sorted(shares) == sorted((d.name, j) for d, j in pair_items(directions, 3))
    write_pairs(toon64, None, directions, 2, tmp_path / "one", FAST)
    for k in range(2):
        write_pairs(toon64, None, directions, 2, tmp_path / "two", FAST, process_index=k, num_processes=2)
    one, two = read_pairs(tmp_path / "one"), read_pairs(tmp_path / "two")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert a["prompts"] == b["prompts"] and np.array_equal(a["left"], b["left"])
        assert np.array_equal(a["right"], b["right"])
    assert one[0]["prompts"][2].endswith("santa claus costume") and one[2]["prompts"][2].endswith("angry")
    assert not np.array_equal(one[0]["left"], one[1]["left"])
    assert write_pairs(toon64, None, directions, 2, tmp_path / "one", FAST) == 0  # resumed: nothing left to make
    with pytest.raises(ValueError, match="made with"):
        write_pairs(toon64, None, directions, 2, tmp_path / "one", PairConfig(steps=3, identity=False))


def test_pairs_command(tmp_path):
    from semedit.cli import main

    out = tmp_path / "pairs"
    args = ["mcdm", "pairs", "--edit", "costume=royal", "-n", "1", "--out", str(out), "--steps", "2", "--no-identity"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(p.read_text()) for p in out.glob("*/*.json")]
    assert record["prompts"][2].endswith("traditional golden palace costume")
    bad = CliRunner().invoke(main, ["mcdm", "pairs", "--edit", "costume=pirate", "-n", "1", "--out", str(out)])
    assert bad.exit_code != 0 and "one of flower, sheep, santa, royal" in bad.output


def test_identity_encoder_trains_and_resumes(tmp_path):
    from semedit.methods.mcdm.model import load_identity_encoder
    from semedit.methods.mcdm.train import IDENTITY_TRAIN, train_identity_encoder

    cfg = IDENTITY_TRAIN.with_changes(steps=2, batch_size=2)
    report = train_identity_encoder("toon-64", tmp_path / "run", tmp_path / "enc", cfg, heldout=2, resume=True)
    assert report["steps"] == 2 and 0 <= report["identity_agreement_with_c_id"][0] <= 1
    encoder = load_identity_encoder(tmp_path / "enc")
    assert encoder(torch.zeros(1, 65, encoder.config.image_dim)).shape == (1, 2, encoder.config.word_dim)
    longer = IDENTITY_TRAIN.with_changes(steps=3, batch_size=2)
    again = train_identity_encoder("toon-64", tmp_path / "run", None, longer, heldout=2, resume=True)
    assert again["steps"] == 3

"""The papers' metric networks (LPIPS, FID Inception, ArcFace): converted from files named like the
published ones, loaded only from safetensors, with clear errors, and metrics that behave as defined.
Bit-exact agreement with the reference packages on the same weights is checked by
benchmarks/paper_nets_reference.py (it needs lpips, pytorch-fid and torchvision)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from semedit.cli import main
from semedit.eval import paper_nets as pn
from semedit.eval.metrics import frechet_distance
from semedit.world import render, sample_record


def _random_state(net: torch.nn.Module, seed: int, positive: tuple[str, ...] = ()) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in net.state_dict().items():
        if not v.is_floating_point():
            state[k] = v.clone()
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(v.shape, generator=g)
        else:
            r = torch.randn(v.shape, generator=g) * (1.0 / (v[0].numel() if v.ndim > 1 else 1)) ** 0.5
            state[k] = r.abs() if k.startswith(positive) else r
    return state


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Random weights in the published files' layouts (.pth), extra tensors included (classifier, fc)."""
    d = tmp_path_factory.mktemp("published")
    lp = _random_state(pn.LPIPSAlex(), 0, positive=("lin",))  # lpips' calibrated weights are >= 0
    torch.save({**{k: v for k, v in lp.items() if k.startswith("features.")},
                "classifier.1.weight": torch.zeros(4096, 9216)}, d / "alexnet-owt.pth")
    torch.save({k: v for k, v in lp.items() if k.startswith("lin")}, d / "alex.pth")
    inc = _random_state(pn.FIDInceptionV3(), 1)
    torch.save({**inc, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, d / "pt_inception.pth")
    arc = _random_state(pn.ArcFaceIResNet((2, 2, 2, 2), num_features=128), 2)  # an iresnet18, 128-d
    torch.save({f"module.{k}": v for k, v in arc.items()}, d / "backbone.pth")  # as saved from DataParallel
    return d, {"lpips": lp, "inception": inc, "arcface": arc}


@pytest.fixture(scope="module")
def nets(published, tmp_path_factory):
    d, _ = published
    out = tmp_path_factory.mktemp("converted")
    files = {"lpips": [d / "alexnet-owt.pth", d / "alex.pth"], "inception": [d / "pt_inception.pth"],
             "arcface": [d / "backbone.pth"]}
    paths = {k: pn.convert_weights(k, v, out / f"{k}.safetensors") for k, v in files.items()}
    return pn.PaperNets.from_files(**paths), paths


def _renders(n, seed):
    return np.stack([render(sample_record(seed + i)).image for i in range(n)])


def test_converted_weights_load_unchanged(published, nets):
    _, states = published
    loaded, paths = nets
    assert loaded.missing() == [] and loaded.describe_missing() is None
    for kind in pn.PAPER_NETS:
        state = getattr(loaded, kind).state_dict()
        for k, v in states[kind].items():
            if not k.endswith("num_batches_tracked"):
                assert torch.equal(state[k], v), (kind, k)
    assert pn.ArcFaceIResNet.layers_in(states["arcface"]) == (2, 2, 2, 2)
    assert loaded.arcface.fc.out_features == 128


def test_lpips_is_a_distance_of_unit_normalised_features(nets):
    net = nets[0].lpips
    a, b = _renders(3, 0), _renders(3, 100)
    d_ab, d_ba, d_aa = pn.lpips_distance(net, a, b), pn.lpips_distance(net, b, a), pn.lpips_distance(net, a, a)
    assert np.all(d_aa == 0) and np.allclose(d_ab, d_ba) and np.all(d_ab > 0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    assert np.all(pn.lpips_distance(net, a, noisy) < d_ab)  # a little noise is closer than another portrait
    # with only the first layer weighted (all ones): the mean squared distance of its unit-normalised ReLU features
    one = pn.LPIPSAlex()
    one.load_state_dict(net.state_dict())
    with torch.no_grad():
        for k in range(1, 5):
            getattr(one, f"lin{k}").model[1].weight.zero_()
        one.lin0.model[1].weight.fill_(1.0)
        x, y = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (a, b))
        fx, fy = (one.features[:2]((v - one.shift) / one.scale) for v in (x, y))
        want = ((F.normalize(fx, dim=1) - F.normalize(fy, dim=1)) ** 2).sum(1).mean(dim=(1, 2))
    assert pn.lpips_distance(one, a, b) == pytest.approx(want.numpy(), rel=1e-4)


def test_inception_features_and_fid(nets):
    net = nets[0].inception
    a, b = _renders(3, 0), _renders(3, 50)
    fa = pn.inception_features(net, a, batch=2)  # batches of 2 and 1: same as one batch
    assert fa.shape == (3, 2048) and np.allclose(fa, pn.inception_features(net, a), atol=1e-5)
    assert frechet_distance(fa, fa) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(fa, pn.inception_features(net, b)) > 0


def test_arcface_identity(nets):
    net = nets[0].arcface
    a, b = _renders(3, 0), _renders(3, 70)
    assert pn.arcface_similarity(net, a, a) == pytest.approx(np.ones(3), abs=1e-5)
    s = pn.arcface_similarity(net, a, b)
    assert s.shape == (3,) and np.all(s < 0.9999) and np.all(s >= -1)
    with pytest.raises(ValueError, match="equal shape"):
        pn.arcface_similarity(net, a, b[:2])


def test_weight_errors_are_clear_and_write_nothing(published, nets, tmp_path):
    d, _ = published
    _, paths = nets
    with pytest.raises(ValueError, match="only from .safetensors.*convert-weights"):
        pn.load_paper_net("inception", d / "pt_inception.pth")
    with pytest.raises(ValueError, match="not lpips weights.*convert-weights"):
        pn.load_paper_net("lpips", paths["arcface"])
    with pytest.raises(ValueError, match="not lpips weights"):  # the linear layers' file alone
        pn.convert_weights("lpips", [d / "alex.pth"], tmp_path / "x.safetensors")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        pn.convert_weights("arcface", [bad], tmp_path / "x.safetensors")
    with pytest.raises(FileExistsError, match="overwrite"):
        pn.convert_weights("inception", [d / "pt_inception.pth"], paths["inception"])
    with pytest.raises(FileNotFoundError):
        pn.load_paper_net("arcface", tmp_path / "missing.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_weights_cli(published, tmp_path):
    d, _ = published
    out = tmp_path / "arcface.safetensors"
    r = CliRunner().invoke(main, ["convert-weights", "arcface", str(d / "backbone.pth"), "-o", str(out)])
    assert r.exit_code == 0 and out.exists(), r.output
    before = out.read_bytes()
    r = CliRunner().invoke(main, ["convert-weights", "arcface", str(d / "backbone.pth"), "-o", str(out)])
    assert r.exit_code != 0 and "overwrite" in r.output and out.read_bytes() == before
    r = CliRunner().invoke(main, ["convert-weights", "lpips", str(d / "backbone.pth"),
                                  "-o", str(tmp_path / "l.safetensors")])
    assert r.exit_code != 0 and "not lpips weights" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["bench", "--methods", "sdedit", "--out", str(tmp_path / "b"),
                                  "--lpips-weights", str(d / "alex.pth")])
    assert r.exit_code != 0 and "only from .safetensors" in r.output and not (tmp_path / "b").exists()


def test_bench_computes_the_papers_metrics_with_the_networks_given(nets, tmp_path, monkeypatch):
    from semedit.eval import bench
    from semedit.methods.base import REGISTRY, EditResult, register
    from semedit.models.evaluator import ToonEvaluator
    from tests.test_bench import _FakeBackbone, _NoConfig

    monkeypatch.setattr(bench, "reference_images", lambda: _renders(4, 7_000_000))  # a small reference set
    torch.manual_seed(0)
    evaluator = ToonEvaluator(channels=(8, 16, 16)).eval()
    truth = {t.edit.source_render.image.tobytes(): t.edit.target_render.image for t in bench.make_tasks(["hair"], 2)}
    register("oracle_pn", _NoConfig)(lambda bb, req, cfg, seed: EditResult(truth[req.image.tobytes()], None, {}, {}, 0))
    register("identity_pn", _NoConfig)(lambda bb, req, cfg, seed: EditResult(req.image.copy(), None, {}, {}, 0))
    try:
        report = bench.run_benchmark(_FakeBackbone(), evaluator, ["oracle_pn", "identity_pn"], ["hair"], 2, tmp_path,
                                     paper_nets=nets[0])
    finally:
        del REGISTRY["oracle_pn"], REGISTRY["identity_pn"]
    rows = {(r["method"], r["index"]): r for r in report["tasks"]}
    for i in range(2):
        assert rows["oracle_pn", i]["lpips_gt"] == 0 and rows["oracle_pn", i]["lpips_source"] > 0
        assert rows["identity_pn", i]["lpips_source"] == 0
        assert rows["identity_pn", i]["arcface_identity"] == pytest.approx(1, abs=1e-5)
    # the oracle's outputs are the ground-truth edits: the same FID as the floor
    assert report["fid"]["oracle_pn"] == pytest.approx(report["fid"]["ground_truth"])
    assert report["not_computed"] is None
    table = (tmp_path / "table.md").read_text()
    assert "LPIPS src" in table and "ArcFace ID" in table and "FID (Inception pool3)" in table
    # judged again without the networks: their figures are dropped and named as not computed
    again = bench.rejudge(tmp_path, evaluator)
    assert all("lpips_source" not in r for r in again["tasks"]) and again["fid"] == {}
    assert "LPIPS, Inception FID, ArcFace identity not computed" in again["not_computed"]
    table = (tmp_path / "table.md").read_text()
    assert "LPIPS src" not in table and "LPIPS, Inception FID, ArcFace identity not computed" in table

"""Check semedit's metric networks (semedit.eval.paper_nets) against the reference code on the same weights.

The reference code: the `lpips` and `pytorch-fid` packages (with torchvision) and insightface's
arcface_torch `backbones/iresnet.py` (a checkout of github.com/deepinsight/insightface, folder
recognition/arcface_torch, given with --arcface-torch). The published weights are not needed: each
reference network gets random weights (seeded; batch-norm statistics randomised too, so that they
are checked), they are converted with `semedit.eval.paper_nets.convert_weights` exactly as a user's
files would be (LPIPS takes its linear layers from the lpips package's own published alex.pth), and
both networks judge the same toon renders. Prints a table of the largest differences.

    pip install lpips pytorch-fid torchvision
    python benchmarks/paper_nets_reference.py --arcface-torch PATH/TO/insightface/recognition/arcface_torch
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch


def import_torchvision():
    """torchvision; if its compiled ops cannot load beside this torch build (e.g. the CUDA wheel next to
    a CPU torch), stub the two modules that register them: only the model definitions are used here."""
    try:
        return importlib.import_module("torchvision"), False
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        return importlib.import_module("torchvision"), True


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not name.startswith("scaling_layer."):  # LPIPS' constants stay
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                elif name.endswith("running_mean") or name.endswith(".bias"):
                    t.copy_(0.1 * torch.randn(t.shape, generator=g))
                elif name.endswith("weight") and t.ndim == 1:  # batch-norm / PReLU scales
                    t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
                else:  # conv / linear weights, scaled to keep activations finite through deep nets
                    fan_in = t[0].numel() if t.ndim > 1 else 1
                    t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5)
    return module.eval()


def toon_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from semedit.world.attributes import sample_record
    from semedit.world.render import render

    a = np.stack([render(sample_record(seed + i)).image for i in range(n)])
    b = np.stack([render(sample_record(seed + 10_000 + i)).image for i in range(n)])
    return a, b


def save(state: dict, path: Path) -> Path:
    torch.save({k: v.clone() for k, v in state.items()}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arcface-torch", type=Path, default=None,
                    help="insightface's recognition/arcface_torch folder (skip ArcFace without it)")
    ap.add_argument("--n", type=int, default=8, help="image pairs per check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from semedit.eval import paper_nets as pn

    _, stubbed = import_torchvision()
    a, b = toon_images(args.n, 3_000_000 + args.seed)
    rows = []
    tmp = Path(tempfile.mkdtemp())

    # LPIPS: lpips.LPIPS(net="alex") with its published linear layers (the package's weights/v0.1/alex.pth,
    # converted as a user's file is) on a random AlexNet trunk
    import lpips

    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    randomise(ref.net, args.seed)
    # torchvision's names: slice{s}.{index}.weight -> features.{index}.weight
    alex = {"features." + k.split(".", 1)[1]: v for k, v in ref.net.state_dict().items()}
    lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    ours = pn.load_paper_net("lpips", pn.convert_weights(
        "lpips", [save(alex, tmp / "alexnet.pth"), lin_file], tmp / "lpips.safetensors"))
    with torch.no_grad():
        ta, tb = pn._images(a) * 2 - 1, pn._images(b) * 2 - 1
        want = ref(ta, tb).flatten().numpy()
    got = pn.lpips_distance(ours, a, b)
    rows.append(("LPIPS (alex, v0.1)", np.abs(got - want).max(), np.abs(want).mean()))

    # FID Inception: pytorch-fid's InceptionV3([pool3]) with its FID blocks, weights random instead of the URL's
    from pytorch_fid import inception as fid

    def random_fid_inception():
        net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        for name, block in (("Mixed_5b", fid.FIDInceptionA(192, pool_features=32)),
                            ("Mixed_5c", fid.FIDInceptionA(256, pool_features=64)),
                            ("Mixed_5d", fid.FIDInceptionA(288, pool_features=64)),
                            ("Mixed_6b", fid.FIDInceptionC(768, channels_7x7=128)),
                            ("Mixed_6c", fid.FIDInceptionC(768, channels_7x7=160)),
                            ("Mixed_6d", fid.FIDInceptionC(768, channels_7x7=160)),
                            ("Mixed_6e", fid.FIDInceptionC(768, channels_7x7=192)),
                            ("Mixed_7b", fid.FIDInceptionE_1(1280)), ("Mixed_7c", fid.FIDInceptionE_2(2048))):
            setattr(net, name, block)
        return randomise(net, args.seed + 1)

    built = []
    fid.fid_inception_v3 = lambda: built.append(random_fid_inception()) or built[-1]
    ref = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = pn.load_paper_net("inception", pn.convert_weights(
        "inception", [save(built[0].state_dict(), tmp / "pt_inception.pth")], tmp / "inception.safetensors"))
    with torch.no_grad():
        want = ref(pn._images(a))[0].flatten(1).numpy()
    got = pn.inception_features(ours, a)
    rows.append(("FID Inception pool3", np.abs(got - want).max(), np.abs(want).mean()))
    # FID itself: pytorch-fid's calculate_frechet_distance on its own features vs semedit's on semedit's, for
    # two sets of 2n renders (features scaled up: random weights give small activations, a too easy check)
    from pytorch_fid.fid_score import calculate_frechet_distance

    from semedit.eval.metrics import frechet_distance

    c, d = toon_images(2 * args.n, 4_000_000 + args.seed)
    with torch.no_grad():
        fc_ref, fd_ref = (100 * ref(pn._images(x))[0].flatten(1).numpy().astype(np.float64) for x in (c, d))
    want = calculate_frechet_distance(fc_ref.mean(0), np.cov(fc_ref, rowvar=False),
                                      fd_ref.mean(0), np.cov(fd_ref, rowvar=False))
    got = frechet_distance(100 * pn.inception_features(ours, c), 100 * pn.inception_features(ours, d))
    rows.append((f"FID ({2 * args.n} vs {2 * args.n} renders)", abs(got - want), abs(want)))

    # ArcFace: arcface_torch's iresnet50 (and iresnet18) backbones
    if args.arcface_torch is not None:
        sys.path.insert(0, str(args.arcface_torch))
        from backbones.iresnet import iresnet18, iresnet50

        for name, make in (("iresnet18", iresnet18), ("iresnet50", iresnet50)):
            ref = randomise(make(), args.seed + 2)
            ours = pn.load_paper_net("arcface", pn.convert_weights(
                "arcface", [save(ref.state_dict(), tmp / f"{name}.pth")], tmp / f"{name}.safetensors"))
            x = torch.nn.functional.interpolate(pn._images(a), size=(112, 112), mode="bilinear") * 2 - 1
            with torch.no_grad():
                want, got = ref(x).numpy(), ours(x).numpy()
            rows.append((f"ArcFace {name} embedding", np.abs(got - want).max(), np.abs(want).mean()))

    print(f"torchvision ops stubbed: {stubbed}; {args.n} toon image pairs, seed {args.seed}\n")
    print("| network | max abs difference | mean abs reference value |\n|---|---|---|")
    for name, diff, scale in rows:
        print(f"| {name} | {diff:.2e} | {scale:.3g} |")


if __name__ == "__main__":
    main()

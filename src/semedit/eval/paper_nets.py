"""The papers' own metric networks, run from weights the user has locally: LPIPS (AlexNet, v0.1), the
Inception-v3 of FID (pool3 features) and ArcFace (IResNet) identity similarity.

Written here because their usual packages (lpips, pytorch-fid, insightface) need torchvision or onnx.
Each network keeps the parameter names of the file people already have, so that
`convert_weights` turns those files into one safetensors file by a plain merge:
- LPIPS: torchvision's `alexnet-owt-7be5be79.pth` (`features.*`) + the lpips package's
  `weights/v0.1/alex.pth` (`lin{k}.model.1.weight`);
- FID: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (torchvision `Inception3` names);
- ArcFace: insightface arcface_torch's `backbone.pth` (iresnet18/34/50/100/200, depth read from the file).
At run time weights load only from safetensors (DESIGN.md, "Conventions").
`benchmarks/paper_nets_reference.py` checks each network against the reference code on the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAPER_NETS = ("lpips", "inception", "arcface")
ARCFACE_SIZE = 112  # arcface_torch's aligned-face input
INCEPTION_SIZE = 299  # pytorch-fid resizes every input to this, bilinear


def _images(x: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float Nx3xHxW in [0, 1]."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images N x H x W x 3, got {x.dtype} {x.shape}")
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


# --- LPIPS (Zhang et al. 2018, version 0.1 with linear calibration) --------------------------------------

class _LinLayer(nn.Module):
    """lpips' NetLinLayer, 1x1 conv without bias; its training-time dropout is an identity here (same names)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPSAlex(nn.Module):
    """LPIPS with torchvision's AlexNet features; forward takes images in [-1, 1], returns N distances."""

    TAPS = (1, 4, 7, 9, 11)  # the ReLU outputs lpips compares (its slices end there)
    SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer (ImageNet statistics in [-1, 1])
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())
        for k, c in enumerate((64, 192, 384, 256, 256)):
            self.add_module(f"lin{k}", _LinLayer(c))
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                out.append(h)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = 0
        for k, (fa, fb) in enumerate(zip(self.taps(a), self.taps(b))):
            # unit-normalise each position's channel vector (eps as in lpips.normalize_tensor)
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((fa - fb) ** 2).mean(dim=(2, 3))
        return total[:, 0]


@torch.no_grad()
def lpips_distance(net: LPIPSAlex, a: np.ndarray, b: np.ndarray, batch: int = 64) -> np.ndarray:
    """LPIPS between two uint8 image sets (N x H x W x 3) of equal shape, pair by pair."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"LPIPS needs images of equal shape, got {np.shape(a)} and {np.shape(b)}")
    ta, tb = _images(a) * 2 - 1, _images(b) * 2 - 1
    return torch.cat([net(ta[i:i + batch], tb[i:i + batch]) for i in range(0, len(ta), batch)]).numpy()


# --- Inception-v3 of FID (pytorch-fid's FID variant, pool3 features) -------------------------------------

class _Conv(nn.Module):
    """torchvision's BasicConv2d: conv without bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):  # the FID blocks average without the zero padding (TF's behaviour)
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _Conv(64, 96, 3, padding=1), _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class _BlockB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _Conv(64, 96, 3, padding=1), _Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class _BlockC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(padding=(0, 3)), dict(padding=(3, 0))
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2, self.branch7x7_3 = _Conv(c7, c7, (1, 7), **row), _Conv(c7, 192, (7, 1), **col)
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2, self.branch7x7dbl_3 = _Conv(c7, c7, (7, 1), **col), _Conv(c7, c7, (1, 7), **row)
        self.branch7x7dbl_4, self.branch7x7dbl_5 = _Conv(c7, c7, (7, 1), **col), _Conv(c7, 192, (1, 7), **row)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), dbl,
                          self.branch_pool(_avg_pool(x))], 1)


class _BlockD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class _BlockE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # pytorch-fid: Mixed_7b averages (FIDInceptionE_1), Mixed_7c takes the max
        row, col = dict(padding=(0, 1)), dict(padding=(1, 0))
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _Conv(384, 384, (1, 3), **row), _Conv(384, 384, (3, 1), **col)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 448, 1), _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = _Conv(384, 384, (1, 3), **row), _Conv(384, 384, (3, 1), **col)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception network up to pool3; forward takes images in [0, 1], returns N x 2048 features."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b, self.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b, self.Mixed_7c = _BlockE(1280, max_pool=False), _BlockE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


@torch.no_grad()
def inception_features(net: FIDInceptionV3, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """pool3 features (N x 2048) of uint8 images, for FID with `metrics.frechet_distance`."""
    x = _images(images)
    return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


# --- ArcFace identity (Deng et al. 2019; insightface arcface_torch IResNet) ------------------------------

class _IBasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
                           if stride != 1 or cin != planes else None)

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class ArcFaceIResNet(nn.Module):
    """IResNet face embedder; forward takes 112x112 images in [-1, 1], returns N x num_features embeddings."""

    def __init__(self, layers=(3, 4, 14, 3), num_features: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            self.add_module(f"layer{i + 1}", nn.Sequential(*[_IBasicBlock(cin if j == 0 else planes, planes,
                                                                          2 if j == 0 else 1) for j in range(n)]))
            cin = planes
        self.bn2 = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))

    @staticmethod
    def layers_in(state: dict) -> tuple[int, ...]:
        """Blocks per stage, read from a state dict's `layer{k}.{j}.` names (iresnet50: 3, 4, 14, 3)."""
        return tuple(1 + max((int(k.split(".")[1]) for k in state if k.startswith(f"layer{s}.")), default=-1)
                     for s in range(1, 5))


@torch.no_grad()
def arcface_similarity(net: ArcFaceIResNet, a: np.ndarray, b: np.ndarray, batch: int = 32) -> np.ndarray:
    """Cosine similarity of ArcFace embeddings of two uint8 image sets, pair by pair (DeltaEdit's IDS).
    Toon portraits are centred faces; they are resized to 112x112 without landmark alignment."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"ArcFace identity needs images of equal shape, got {np.shape(a)} and {np.shape(b)}")

    def embed(x):
        x = F.interpolate(_images(x), size=(ARCFACE_SIZE, ARCFACE_SIZE), mode="bilinear", align_corners=False)
        return torch.cat([net(x[i:i + batch] * 2 - 1) for i in range(0, len(x), batch)])

    return F.cosine_similarity(embed(a), embed(b), dim=1).numpy()


# --- weights ---------------------------------------------------------------------------------------------

def _empty(kind: str, state: dict) -> nn.Module:
    if kind == "lpips":
        return LPIPSAlex()
    if kind == "inception":
        return FIDInceptionV3()
    if kind == "arcface":  # depth and embedding size as in the file
        return ArcFaceIResNet(ArcFaceIResNet.layers_in(state), num_features=state["fc.weight"].shape[0])
    raise ValueError(f"unknown metric network {kind!r}; known: {', '.join(PAPER_NETS)}")


def _fill(kind: str, state: dict, source: str) -> nn.Module:
    """The network `kind` with `state` loaded; keys it does not use are ignored, a missing one is an error."""
    net = _empty(kind, state)
    wanted = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(wanted - set(state))
    if missing:
        raise ValueError(f"{source} is not {kind} weights: {len(missing)} tensors missing (first: {missing[0]}). "
                         f"Convert the published files with `semedit convert-weights {kind} ...`.")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(net.state_dict()[k].shape)]
    if bad:
        raise ValueError(f"{source}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                         f"expected {tuple(net.state_dict()[bad[0]].shape)}")
    net.load_state_dict({k: state[k].float() for k in wanted}, strict=False)
    return net.eval().requires_grad_(False)


def load_paper_net(kind: str, path: str | Path) -> nn.Module:
    """One metric network from a safetensors file (made by `convert_weights`)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} weights: no file {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"{kind} weights load only from .safetensors; convert {path.name} with "
                         f"`semedit convert-weights {kind} {path} -o {path.with_suffix('.safetensors').name}`")
    return _fill(kind, load_file(path), str(path))


def convert_weights(kind: str, sources: list[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Merge the published weight files of `kind` (see the module docstring) into one safetensors file,
    checked by loading it into the network. Pickled .pth files are read with torch.load(weights_only=True)."""
    from safetensors.torch import load_file, save_file

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    state: dict = {}
    for src in map(Path, sources):
        if not src.is_file():
            raise FileNotFoundError(f"no file {src}")
        try:
            if src.suffix == ".safetensors":
                part = load_file(src)
            else:
                part = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as e:  # not a weights file, or one that needs unsafe unpickling: name it, no traceback
            raise ValueError(f"could not read {src} as weights: {e}") from None
        part = part.get("state_dict", part) if isinstance(part, dict) else part
        state.update({k.removeprefix("module."): v for k, v in part.items() if isinstance(v, torch.Tensor)})
    net = _fill(kind, state, " + ".join(map(str, sources)))
    keep = {k: v.detach().contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(keep, out, metadata={"semedit_metric_net": kind})
    return out


@dataclass
class PaperNets:
    """The metric networks a user has (any may be None); the benchmark computes what they allow."""

    lpips: LPIPSAlex | None = None
    inception: FIDInceptionV3 | None = None
    arcface: ArcFaceIResNet | None = None

    @classmethod
    def from_files(cls, lpips=None, inception=None, arcface=None) -> PaperNets:
        paths = {"lpips": lpips, "inception": inception, "arcface": arcface}
        return cls(**{k: load_paper_net(k, p) for k, p in paths.items() if p is not None})

    def missing(self) -> list[str]:
        return [k for k in PAPER_NETS if getattr(self, k) is None]

    def describe_missing(self) -> str | None:
        names = {"lpips": "LPIPS", "inception": "Inception FID", "arcface": "ArcFace identity"}
        missing = [names[k] for k in self.missing()]
        if not missing:
            return None
        return (f"{', '.join(missing)} not computed: no weights given (convert the published files with "
                f"`semedit convert-weights`, then pass {' '.join(f'--{k}-weights F' for k in self.missing())})")

"""The generator whose style space DeltaEdit edits, and its inversion (the paper's StyleGAN2 and e4e encoder, §3-4,
§5.1), at toon-64's 64x64.

StyleGAN2's synthesis structure: a mapping network z -> w, a learned 4x4 constant, then per resolution an
upsampling and a plain modulated 3x3 convolution, each with its own affine map A(w) -> the layer's channel-wise
styles, and a toRGB layer (skip architecture). The style space S is the concatenation of the convolutions' styles,
toRGB excluded (the official DeltaEdit code's 6,048 channels at 1024 px), and splits into coarse (4-8 px), medium
(16-32 px) and fine (64 px and up) layers as its Delta Mapper does. Not kept from StyleGAN2: the per-pixel noise
inputs (the toon world has no stochastic detail) and the blurred transposed convolution (bilinear upsampling, then
the convolution).

The encoder maps an image to W+ (one w per layer: e4e's base w_0 and per-layer offsets), from which the
generator's affines give s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ...models.backbone import load_family_part
from ...models.images import to_tensor, to_uint8

STYLE_FOLDER = "style-generator"  # inside a model family's folder: generator/ and encoder/
LEVELS = ("coarse", "medium", "fine")


def level_of(resolution: int) -> str:
    """StyleGAN's coarse / medium / fine layers by the resolution they work at (the Delta Mapper's split)."""
    return "coarse" if resolution <= 8 else "medium" if resolution <= 32 else "fine"


class EqualLinear(nn.Module):
    """StyleGAN's linear layer with equalised learning rate (weights stored at N(0, 1) / lr_mul and scaled at run
    time), optionally followed by the scaled leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


class StyleConv(nn.Module):
    """A modulated convolution (StyleGAN2 §2.2): weights scaled by the input channels' styles s = A(w), demodulated;
    computed as (x * s) conv W, times the demodulation coefficients, which equals the grouped form."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, kernel: int = 3, up: bool = False,
                 demodulate: bool = True, activate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.up, self.demodulate, self.activate = up, demodulate, activate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        w = self.weight * self.scale
        x = F.conv2d(x * style[:, :, None, None], w, padding=w.shape[-1] // 2)
        if self.demodulate:
            x = x * torch.rsqrt(style.square() @ w.square().sum((2, 3)).T + 1e-8)[:, :, None, None]
        x = x + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activate else x


class StyleGenerator(ModelMixin, ConfigMixin):
    """z -> w (mapping), W+ -> S (the affines), S (+ W+ for toRGB) -> image in [-1, 1] (synthesis).

    Convolution k reads w_k of W+ and toRGB j reads w_{2j+1} (StyleGAN2's indexing): W+ has
    2 * len(resolutions) vectors."""

    @register_to_config
    def __init__(self, resolution: int = 64, z_dim: int = 128, w_dim: int = 128, mapping_layers: int = 4,
                 mapping_lr_mul: float = 0.01, channels: tuple[int, ...] = (256, 128, 64, 32, 16)):
        super().__init__()
        resolutions = [4 * 2**i for i in range(len(channels))]
        if resolutions[-1] != resolution:
            raise ValueError(f"{len(channels)} channel widths reach {resolutions[-1]} px, not {resolution}")
        self.mapping = nn.Sequential(*[EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=mapping_lr_mul,
                                                   activate=True) for i in range(mapping_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))  # the mean mapped w (for truncation)
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        convs, to_rgbs, self.layer_resolutions = [StyleConv(channels[0], channels[0], w_dim)], [], [4]
        for prev, ch, res in zip(channels, channels[1:], resolutions[1:]):
            convs += [StyleConv(prev, ch, w_dim, up=True), StyleConv(ch, ch, w_dim)]
            self.layer_resolutions += [res, res]
        for ch in channels:
            to_rgbs.append(StyleConv(ch, 3, w_dim, kernel=1, demodulate=False, activate=False))
        self.convs, self.to_rgbs = nn.ModuleList(convs), nn.ModuleList(to_rgbs)

    @property
    def num_ws(self) -> int:
        return 2 * len(self.to_rgbs)

    @property
    def style_dims(self) -> list[int]:
        """Channels of each convolution's style (its input channels)."""
        return [c.weight.shape[1] for c in self.convs]

    @property
    def style_dim(self) -> int:
        return sum(self.style_dims)

    def level_slices(self) -> dict[str, slice]:
        """Where the coarse, medium and fine layers' styles lie in s."""
        out, start = {}, 0
        for dim, res in zip(self.style_dims, self.layer_resolutions):
            level = level_of(res)
            out[level] = slice(out[level].start if level in out else start, start + dim)
            start += dim
        return out

    def map(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.mapping(z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8))  # pixel norm of z
        return self.w_avg + truncation * (w - self.w_avg) if truncation != 1 else w

    def w_plus(self, w: torch.Tensor) -> torch.Tensor:
        return w[:, None].expand(-1, self.num_ws, -1)

    def styles(self, w_plus: torch.Tensor) -> torch.Tensor:
        """S of W+: the convolutions' styles, concatenated (B, style_dim)."""
        return torch.cat([conv.affine(w_plus[:, k]) for k, conv in enumerate(self.convs)], 1)

    def synthesis(self, s: torch.Tensor, w_plus: torch.Tensor) -> torch.Tensor:
        """The image of styles s; toRGB's styles come from W+ (they are not part of S)."""
        per_layer = s.split(self.style_dims, 1)
        x, rgb = self.const.expand(len(s), -1, -1, -1), None
        for k, conv in enumerate(self.convs):
            x = conv(x, per_layer[k])
            if k % 2 == 0:  # the last convolution of a resolution
                j = k // 2
                out = self.to_rgbs[j](x, self.to_rgbs[j].affine(w_plus[:, 2 * j + 1]))
                rgb = out if rgb is None else out + F.interpolate(rgb, scale_factor=2, mode="bilinear",
                                                                  align_corners=False)
        return rgb

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.styles(w_plus), w_plus)


class StyleEncoder(ModelMixin, ConfigMixin):
    """An image in [-1, 1] -> W+ (e4e's role): a convolutional pyramid (64 -> 4 px); w_0 read from the global
    features (trained with the generator, it needs no w_avg origin as e4e on a pretrained one does), and
    w_k = w_0 + an offset read from the features of the resolution layer k works at
    (coarse layers from the deepest, fine ones from the shallowest, with the global features), as e4e's
    progressive offsets over pSp's map2style."""

    @register_to_config
    def __init__(self, resolution: int = 64, w_dim: int = 128, channels: tuple[int, ...] = (32, 64, 128, 256),
                 layer_resolutions: tuple[int, ...] = (4, 8, 8, 16, 16, 32, 32, 64, 64)):
        super().__init__()
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1)
        blocks, ch, res, self.feature_res = [], channels[0], resolution, []
        for out in channels:
            blocks.append(nn.Sequential(nn.Conv2d(ch, out, 3, padding=1), nn.LeakyReLU(0.2),
                                        nn.Conv2d(out, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)))
            ch, res = out, res // 2
            self.feature_res.append(res)
        self.blocks = nn.ModuleList(blocks)
        self.global_features = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1] * 16, 2 * w_dim), nn.LeakyReLU(0.2))
        self.base = nn.Linear(2 * w_dim, w_dim)
        # W+ index -> the resolution its layer works at (toRGB j shares conv 2j+1's w and resolution)
        ws = 2 * (len(set(layer_resolutions)))
        self.w_res = [layer_resolutions[min(k, len(layer_resolutions) - 1)] for k in range(ws)]
        self.offsets = nn.ModuleList([nn.Linear(self._feature_channels(r) + 2 * w_dim, w_dim)
                                      for r in self.w_res])
        for head in self.offsets:  # e4e starts from offsets of zero
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _level(self, res: int) -> int:
        """The feature level read for a layer at `res` px, the one at half its resolution (4 px: the deepest)."""
        return self.feature_res.index(max(res // 2, self.feature_res[-1]))

    def _feature_channels(self, res: int) -> int:
        return self.config.channels[self._level(res)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, features = F.leaky_relu(self.stem(image), 0.2), []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        glob = self.global_features(features[-1])
        w0 = self.base(glob)
        pooled = [f.mean((2, 3)) for f in features]
        offsets = [head(torch.cat([pooled[self._level(r)], glob], 1)) for head, r in zip(self.offsets, self.w_res)]
        return w0[:, None] + torch.stack(offsets, 1)


def load_style_generator(folder: str | Path, device: str | torch.device = "cpu"):
    """The trained generator and encoder of a family's `style-generator/` folder (or a run's output)."""
    folder = Path(folder)
    command = "semedit train style-generator"
    return (load_family_part(StyleGenerator, folder / "generator", "style generator", command, device),
            load_family_part(StyleEncoder, folder / "encoder", "style encoder", command, device))


@torch.no_grad()
def inverted(generator: StyleGenerator, encoder: StyleEncoder, images: np.ndarray, batch: int = 100) -> np.ndarray:
    """G(E(x)) of uint8 images, as uint8: what the edits start from."""
    return np.concatenate([to_uint8(generator(encoder(to_tensor(images[i:i + batch]))))
                           for i in range(0, len(images), batch)])

"""The attribute evaluator: a small CNN that predicts every world attribute, the head pose and the
segmentation map (SEG_CLASSES) from a 64x64 image. It judges the benchmark and the toon-64 quality bars; no editing method uses it.

It is a diffusers `ModelMixin`, so it saves and loads with `save_pretrained` / `from_pretrained`
(safetensors + config.json) like the rest of the family.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..world import CATEGORICAL, POSE_RANGES, SEG_CLASSES, ToonRecord, observable
from ..world.render import HEAD_CENTRE, HEAD_RADIUS
from .images import to_tensor, to_uint8

POSE_KEYS = ("head_x", "head_y", "head_scale", "head_tilt")
# the face details the trunk reads worst (a few pixels each), read from an aligned face crop instead
FACE_ATTRIBUTES = ("expression", "eye_colour", "face_shape")


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(8, cout), nn.SiLU())


def cnn(channels) -> nn.Sequential:
    """A full-resolution stem (gaze and eye colour are a pixel or two), then stride-2 stages."""
    layers = [nn.Sequential(nn.Conv2d(3, channels[0], 3, 1, 1), nn.SiLU())]
    layers += [_block(cin, cout, 2) for cin, cout in zip(channels, channels[1:])]
    return nn.Sequential(*layers)


def attention_pool(attend: nn.Conv2d, x: torch.Tensor) -> list[torch.Tensor]:
    """x (N x C x H x W) pooled once per output map of `attend`, each with its own spatial softmax."""
    w = attend(x).flatten(2).softmax(-1)  # N x heads x HW
    return list(torch.einsum("nkp,ncp->knc", w, x.flatten(2)).unbind(0))


class ToonEvaluator(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (24, 48, 96, 192), attributes: dict | None = None,
                 pose_keys: tuple[str, ...] = POSE_KEYS, seg_classes: int = len(SEG_CLASSES), seg_width: int = 48,
                 pooling: str = "mean", face_attributes: tuple[str, ...] = (), face_size: int = 48,
                 face_extent: float = 1.25, face_channels: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        attributes = attributes or {k: list(v) for k, v in CATEGORICAL.items()}
        self.register_to_config(attributes=attributes)  # the class order is part of the saved model
        self.features = cnn(channels)
        cin = channels[-1]
        trunk_attributes = [k for k in attributes if k not in face_attributes]
        self.heads = nn.ModuleDict({k: nn.Linear(cin, len(attributes[k])) for k in trunk_attributes})
        self.pose = nn.Linear(cin, len(pose_keys))
        if pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', not {pooling!r}")
        # "attention": each head pools the last feature map with its own spatial softmax, so a
        # face detail of a few pixels (expression, gaze) is not averaged away over the whole canvas
        # (the head pose keeps the mean: where the head is must not depend on where a head looks)
        self.attend = nn.Conv2d(cin, len(trunk_attributes), 1) if pooling == "attention" else None
        # per-pixel classes from the full-resolution stem and the upsampled first stage; a 1x1 mix
        # first keeps the full-resolution head cheap on a CPU
        self.seg = nn.Sequential(nn.Conv2d(channels[0] + channels[1], seg_width, 1), nn.SiLU(),
                                 nn.Conv2d(seg_width, seg_classes, 3, 1, 1))
        # A face branch reads the face attributes: the face cut out at the predicted head pose,
        # de-rotated and enlarged (face_size px for +-face_extent head radii), read by its own CNN.
        # A closed mouth is a line or an arc a few pixels apart wherever the head sits and however
        # it tilts; aligned, the difference is always in the same place.
        if face_attributes:
            self.face_features = cnn(face_channels)
            self.face_attend = nn.Conv2d(face_channels[-1], len(face_attributes), 1)
            self.face_heads = nn.ModuleDict({k: nn.Linear(face_channels[-1], len(attributes[k])) for k in face_attributes})

    def _run(self, images: torch.Tensor, with_seg: bool):
        x, skips = images, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if with_seg and i < 2:
                skips.append(x)
        seg = None
        if with_seg:
            up = F.interpolate(skips[1], size=skips[0].shape[-2:], mode="bilinear", align_corners=False)
            seg = self.seg(torch.cat([skips[0], up], 1))
        return x, seg

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Mean-pooled features of images in [-1, 1] (the space of the evaluator Fréchet distance)."""
        return self._run(images, False)[0].mean(dim=(2, 3))

    def forward(self, images: torch.Tensor, face_jitter: torch.Tensor | None = None,
                face_flip: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits per attribute, normalised pose, segmentation logits. For training only: `face_jitter`
        (N x 4: head x, y in px, relative scale, tilt in degrees) moves each face crop off the predicted
        pose, and `face_flip` (N bools) mirrors it (the face attributes do not change in a mirror)."""
        x, seg = self._run(images, True)
        mean = x.mean(dim=(2, 3))
        if self.attend is None:
            pooled = [mean] * len(self.heads)
        else:
            pooled = attention_pool(self.attend, x)
        # attention map i belongs to the i-th attribute by name: the saved config's key order is not kept
        out = {k: self.heads[k](pooled[i]) for i, k in enumerate(sorted(self.heads))}
        out["pose"] = self.pose(mean)
        out["seg"] = seg
        if self.config.face_attributes:
            crop = self.face_crop(images, out["pose"].detach(), face_jitter)
            if face_flip is not None:
                crop = torch.where(face_flip.to(crop.device)[:, None, None, None], crop.flip(-1), crop)
            face = self.face_features(crop)
            pooled = attention_pool(self.face_attend, face)
            for i, k in enumerate(sorted(self.face_heads)):
                out[k] = self.face_heads[k](pooled[i])
        return out

    def face_crop(self, images: torch.Tensor, pose: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """The face at `pose` (normalised, as the pose head predicts it), resampled upright: the
        head frame's (u, v) in [-face_extent, face_extent]^2 (world/render.py `head_frame`), u to
        the right and v down, face_size px square. `jitter` as in `forward`."""
        keys = self.config.pose_keys
        p = {k: _denorm(k, pose[:, keys.index(k)]) for k in ("head_x", "head_y", "head_scale", "head_tilt")}
        if jitter is not None:
            jitter = jitter.to(pose.device, pose.dtype)
            p = {"head_x": p["head_x"] + jitter[:, 0], "head_y": p["head_y"] + jitter[:, 1],
                 "head_scale": p["head_scale"] * (1 + jitter[:, 2]), "head_tilt": p["head_tilt"] + jitter[:, 3]}
        n, _, height, width = images.shape
        t = torch.deg2rad(p["head_tilt"])
        # canvas (x, y) = centre + unit * R(tilt) (u, v); grid_sample wants x / (W / 2) - 1 (64 px canvas)
        r = HEAD_RADIUS * p["head_scale"] * self.config.face_extent
        sx, sy = r / (width / 2), r / (height / 2)
        theta = torch.stack([
            torch.stack([sx * torch.cos(t), -sx * torch.sin(t), (HEAD_CENTRE[0] + p["head_x"]) / (width / 2) - 1], -1),
            torch.stack([sy * torch.sin(t), sy * torch.cos(t), (HEAD_CENTRE[1] + p["head_y"]) / (height / 2) - 1], -1),
        ], 1).to(images.dtype)
        size = self.config.face_size
        grid = F.affine_grid(theta, (n, images.shape[1], size, size), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # --- targets and predictions in world terms -----------------------------------------------

    def targets(self, records: list[ToonRecord]) -> dict[str, torch.Tensor]:
        """Class indices (-1 where the image does not show the attribute) and normalised pose."""
        attrs = self.config.attributes
        out = {}
        for k, values in attrs.items():
            out[k] = torch.tensor([values.index(getattr(r, k)) if observable(r)[k] else -1 for r in records])
        out["pose"] = torch.tensor([[_norm(k, getattr(r, k)) for k in self.config.pose_keys] for r in records],
                                   dtype=torch.float32)
        return out

    def loss(self, out: dict, targets: dict, seg: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy per attribute + pose MSE (+ per-pixel cross-entropy against `seg`, N x H x W ids)."""
        total = sum(F.cross_entropy(out[k], targets[k].to(out[k].device), ignore_index=-1)
                    for k in self.config.attributes if (targets[k] >= 0).any())  # all hidden: no term (not NaN)
        total = total + 4.0 * F.mse_loss(out["pose"], targets["pose"].to(out["pose"].device))
        if seg is not None:
            total = total + F.cross_entropy(out["seg"], seg.long().to(out["seg"].device))
        return total

    @torch.no_grad()
    def predict(self, images: np.ndarray | torch.Tensor, batch: int = 256) -> list[dict]:
        """Attribute values and head pose (canvas px, scale, degrees) for uint8 HxWx3 images
        (N x 64 x 64 x 3) or float tensors in [-1, 1]."""
        self.eval()
        x = as_tensor(images)
        dev, dtype = self.device, self.dtype
        preds = []
        for i in range(0, len(x), batch):
            out = self(x[i:i + batch].to(dev, dtype))
            cols = {k: out[k].argmax(1).tolist() for k in self.config.attributes}
            pose = out["pose"].float().cpu().numpy()
            for j in range(len(pose)):
                p = {k: self.config.attributes[k][cols[k][j]] for k in self.config.attributes}
                p.update({k: _denorm(k, float(pose[j, n])) for n, k in enumerate(self.config.pose_keys)})
                preds.append(p)
        return preds

    @torch.no_grad()
    def segment(self, images, batch: int = 256) -> np.ndarray:
        """Per-pixel class ids (N x H x W, SEG_CLASSES order) of uint8 images or tensors in [-1, 1]."""
        self.eval()
        x = as_tensor(images)
        return torch.cat([self(x[i:i + batch].to(self.device, self.dtype))["seg"].argmax(1).cpu()
                          for i in range(0, len(x), batch)]).numpy().astype(np.uint8)

    @torch.no_grad()
    def face_crops(self, images) -> np.ndarray:
        """What the face branch reads: uint8 face crops (N x face_size x face_size x 3) at the predicted pose."""
        self.eval()
        x = as_tensor(images).to(self.device, self.dtype)
        return to_uint8(self.face_crop(x, self.pose(self.embed(x))))  # the pose head alone: no full forward

    @torch.no_grad()
    def features_of(self, images, batch: int = 256) -> np.ndarray:
        self.eval()
        x = as_tensor(images)
        return torch.cat([self.embed(x[i:i + batch].to(self.device, self.dtype)).float().cpu()
                          for i in range(0, len(x), batch)]).numpy()


def _norm(key, value):
    lo, hi = POSE_RANGES[key]
    return 2 * (value - lo) / (hi - lo) - 1


def _denorm(key, value):
    lo, hi = POSE_RANGES[key]
    return lo + (value + 1) * (hi - lo) / 2


def as_tensor(images) -> torch.Tensor:
    """Float tensors as they are; uint8 (N x) H x W x 3 images in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return images.float()
    images = np.asarray(images)
    return to_tensor(images[None] if images.ndim == 3 else images)


def attribute_accuracy(preds: list[dict], records: list[ToonRecord]) -> dict[str, float]:
    """Per categorical attribute: accuracy over the records that show it."""
    out = {}
    for k in CATEGORICAL:
        hits = [p[k] == getattr(r, k) for p, r in zip(preds, records) if observable(r)[k]]
        out[k] = float(np.mean(hits)) if hits else float("nan")
    return out


def segmentation_accuracy(pred: np.ndarray, true: np.ndarray, region: np.ndarray | None = None) -> float:
    """Share of pixels (inside `region` if given) whose predicted class is the true one."""
    hit = np.asarray(pred) == np.asarray(true)
    if region is not None:
        region = np.broadcast_to(np.asarray(region, bool), hit.shape)
        return float(hit[region].mean()) if region.any() else float("nan")
    return float(hit.mean())


def pose_errors(preds: list[dict], records: list[ToonRecord]) -> dict[str, float]:
    """Mean absolute error of each pose quantity."""
    return {k: float(np.mean([abs(p[k] - getattr(r, k)) for p, r in zip(preds, records)])) for k in POSE_KEYS}

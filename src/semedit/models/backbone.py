"""Loading a backbone: the embedded toon-64 family, a local diffusers Stable-Diffusion-1.x folder,
or a hub id (only when the user names one). A missing model is a clear `BackboneNotFound` error
that says how to get it; nothing is downloaded unless a hub id is given and the hub is reachable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .toon64 import SCHEDULER_CONFIG, TOON64_DIR

TOON64 = "toon-64"
METHOD_DEFAULTS_FILE = "method_defaults.json"  # a family's own defaults for methods' settings, by method
SD_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class BackboneNotFound(FileNotFoundError):
    """A model the user named is not here (and could not be fetched)."""


@dataclass
class Backbone:
    """The parts of a latent text-to-image diffusion model that editing methods use."""
    name: str
    vae: object
    text_encoder: object
    tokenizer: object
    unet: object
    scheduler_config: dict
    controlnets: dict = field(default_factory=dict)  # name -> ControlNetModel
    clip: object | None = None  # CLIPModel (joint text-image space)
    clip_processor: object | None = None
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    root: Path | None = None  # the folder it was loaded from (a family keeps methods' trained parts there)
    networks: str = "eager"  # how the U-Net and ControlNets run (models.fast.accelerated: e.g. "bf16, compiled")
    method_defaults: dict = field(default_factory=dict)  # {method: {setting: value}}: the family's own defaults

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale_factor

    def pipeline(self, controlnet: str | None = None):
        """A diffusers text-to-image pipeline over these components (with a ControlNet if named)."""
        from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline, StableDiffusionPipeline

        parts = dict(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
                     scheduler=DDIMScheduler.from_config(self.scheduler_config), safety_checker=None,
                     feature_extractor=None, requires_safety_checker=False)
        if controlnet is None:
            return StableDiffusionPipeline(**parts)
        if controlnet not in self.controlnets:
            raise ValueError(f"no {controlnet!r} ControlNet in {self.name}; have: {', '.join(self.controlnets) or 'none'}")
        return StableDiffusionControlNetPipeline(controlnet=self.controlnets[controlnet], **parts)


def read_method_defaults(root: Path | None) -> dict[str, dict]:
    """{method: {setting: value}} from a model folder's method_defaults.json: the settings in which the family
    departs from the papers' defaults, measured on it (docs/models/toon-64.md); {} without the file. Keys
    starting with "_" are notes."""
    import json

    path = None if root is None else Path(root) / METHOD_DEFAULTS_FILE
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BackboneNotFound(f"cannot read {path}: {e}") from None
    return {m: {k: v for k, v in s.items() if not k.startswith("_")} for m, s in data.items() if not m.startswith("_")}


def resolve_folder(name_or_path: str, what: str, allow_patterns=None) -> Path:
    """A local folder for a path or a hub id (cache first, then the hub unless offline)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise BackboneNotFound(f"{what} {name_or_path!r} is a file; expected a diffusers/transformers folder")
        return p
    if not _HUB_ID.match(name_or_path):
        raise BackboneNotFound(f"{what} {name_or_path!r} is neither a local folder nor a hub id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name_or_path, local_files_only=True, allow_patterns=allow_patterns))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    how = (f"Download it where there is internet, e.g. `hf download {name_or_path} --local-dir DIR`, and pass "
           f"DIR instead; or use the embedded default, {TOON64!r}.")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise BackboneNotFound(f"{what} {name_or_path!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                               f"is set. {how}")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return Path(snapshot_download(name_or_path, allow_patterns=allow_patterns))
    except Exception as e:  # network down, repo missing, gated: one clear message
        raise BackboneNotFound(f"{what} {name_or_path!r} could not be fetched from the hub "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). {how}") from None


def _load_part(load, folder: Path, name: str, part: str, **kw):
    """`load(folder, **kw)`, or one `BackboneNotFound` that names the part, the folder and what to do."""
    try:
        return load(folder, **kw)
    except Exception as e:  # a missing, truncated, empty or corrupt file: whatever the loader raises
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise BackboneNotFound(f"{name}: cannot load its {part} from {folder} ({type(e).__name__}: {reason}). The "
                               "model folder is incomplete or damaged, or holds weights in a format other than "
                               "safetensors: copy or download it again") from None


def _check_sd_folder(root: Path, name: str) -> None:
    missing = [c for c in SD_COMPONENTS if not (root / c).is_dir()]
    if missing:
        raise BackboneNotFound(f"{name!r} ({root}) is not a Stable Diffusion folder in the diffusers layout: "
                               f"missing {', '.join(c + '/' for c in missing)}")


def model_folder(name_or_path: str) -> Path:
    """The folder of a model: the embedded family's, a local folder, or a hub id's cached copy."""
    if name_or_path == TOON64:
        return TOON64_DIR
    root = resolve_folder(name_or_path, "model")
    _check_sd_folder(root, name_or_path)
    return root


def _read_config(folder: Path, name: str) -> dict:
    import json

    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BackboneNotFound(f"{name}: cannot read {path} ({type(e).__name__}: {e}); the model folder is "
                               "incomplete or damaged: copy or download it again") from None


def image_size_of(name_or_path: str = TOON64) -> int:
    """The image size a backbone edits at, from its U-Net's and VAE's configurations alone (no weights
    load), so that pictures can be checked before a model loads."""
    root = model_folder(name_or_path)
    unet, vae = _read_config(root / "unet", name_or_path), _read_config(root / "vae", name_or_path)
    try:
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (KeyError, TypeError, ValueError):
        raise BackboneNotFound(f"{name_or_path}: its unet/config.json or vae/config.json lacks sample_size or "
                               "block_out_channels") from None


def family_controlnets(root: Path) -> dict[str, Path]:
    """The ControlNets a toon-64-layout family folder holds (controlnet-<name>/), by name."""
    return {k.split("-", 1)[1]: root / k for k in ("controlnet-pose", "controlnet-scribble")
            if (root / k / "config.json").exists()}


def load_backbone(name_or_path: str = TOON64, controlnets=None, clip: str | None = None,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Load a backbone.

    - `"toon-64"`: the embedded family (its ControlNets `pose` and `scribble` and its CLIP load by
      default);
    - a local diffusers Stable-Diffusion-1.x folder or a hub id.

    `controlnets` maps names to folders/hub ids (for toon-64: added to its own; or a list of its own names);
    `clip` is a CLIPModel folder or hub id (toon-64: its own).
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPModel, CLIPProcessor, CLIPTextModel

    from .text import load_tokenizer

    device = torch.device(device)
    if name_or_path == TOON64:
        root, name = TOON64_DIR, TOON64
        if not (root / "model_index.json").exists():
            raise BackboneNotFound(f"the embedded toon-64 family is incomplete in {root} (no model_index.json); "
                                   "train it with `semedit train all`")
        available = family_controlnets(root)
        if controlnets is None:
            controlnets = available
        elif isinstance(controlnets, dict):  # more ControlNets, or others under the embedded names
            controlnets = {**available, **controlnets}
        elif isinstance(controlnets, (list, tuple)):
            unknown = [c for c in controlnets if c not in available]
            if unknown:
                raise BackboneNotFound(f"toon-64 has no ControlNet {', '.join(unknown)}; it has: "
                                       f"{', '.join(available) or 'none'}")
            controlnets = {c: available[c] for c in controlnets}
        clip = clip or (root / "clip" if (root / "clip" / "config.json").exists() else None)
    else:
        root, name = resolve_folder(name_or_path, "model"), name_or_path
        _check_sd_folder(root, name_or_path)
        if isinstance(controlnets, (list, tuple)):
            raise ValueError("for a model other than toon-64, pass controlnets as {name: folder or hub id}")
        controlnets = controlnets or {}

    from diffusers import DDIMScheduler

    kw = dict(torch_dtype=dtype, use_safetensors=True)  # weights from safetensors only: no pickle runs
    tokenizer = _load_part(load_tokenizer, root / "tokenizer", name, "tokenizer")
    text_encoder = _load_part(CLIPTextModel.from_pretrained, root / "text_encoder", name, "text encoder", **kw)
    vae = _load_part(AutoencoderKL.from_pretrained, root / "vae", name, "VAE", **kw)
    unet = _load_part(UNet2DConditionModel.from_pretrained, root / "unet", name, "U-Net", **kw)
    sched = dict(_load_part(DDIMScheduler.load_config, root / "scheduler", name, "scheduler"))
    sched.update(clip_sample=False, set_alpha_to_one=False)  # SD-style DDIM (see DDIMScheduler docs)
    nets = {}
    for cn_name, where in controlnets.items():
        folder = resolve_folder(str(where), f"ControlNet {cn_name!r}")
        nets[cn_name] = _load_part(ControlNetModel.from_pretrained, folder, str(where), f"{cn_name} ControlNet", **kw)
    clip_model = clip_proc = None
    if clip is not None:
        clip_root = resolve_folder(str(clip), "CLIP model")
        clip_model = _load_part(CLIPModel.from_pretrained, clip_root, str(clip), "CLIP", **kw)
        clip_proc = _load_part(CLIPProcessor.from_pretrained, clip_root, str(clip), "CLIP processor")
    bb = Backbone(name=name, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                  scheduler_config=sched, controlnets=nets, clip=clip_model, clip_processor=clip_proc,
                  device=device, dtype=dtype, root=root, method_defaults=read_method_defaults(root))
    for m in (vae, text_encoder, unet, *nets.values(), *([clip_model] if clip_model is not None else [])):
        m.to(device).eval().requires_grad_(False)
    return bb


def load_family_part(model_class, folder: str | Path, what: str, train_command: str,
                     device: str | torch.device = "cpu"):
    """A method's trained part (a diffusers ModelMixin saved in `folder`), frozen, in float32 on `device`; a folder
    without it is a FileNotFoundError that names the command that trains it."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no {what} in {folder}; train with `{train_command}`")
    model = model_class.from_pretrained(folder, torch_dtype=torch.float32, use_safetensors=True)
    return model.to(device).eval().requires_grad_(False)


def load_evaluator(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The toon-64 attribute evaluator (the benchmark's judge)."""
    from .evaluator import ToonEvaluator

    path = Path(path) if path else TOON64_DIR / "evaluator"
    if not (path / "config.json").exists():
        raise BackboneNotFound(f"no evaluator in {path}; train it with `semedit train evaluator`")
    return ToonEvaluator.from_pretrained(path, torch_dtype=torch.float32, use_safetensors=True).to(device).eval()


def write_family_index(root: Path = TOON64_DIR) -> None:
    """model_index.json and scheduler/ of the embedded family (the StableDiffusionPipeline layout)."""
    import json

    import diffusers
    from diffusers import DDIMScheduler

    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(root / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")

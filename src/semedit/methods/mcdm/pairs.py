"""Paired data generation (the MCDM paper's §3.2, Fig. 2 left; supp. §1.1): a source portrait x_A and its
edit x_B made side by side, [x_A, x_B], in one denoising run on a 64 x 128 canvas (toon-64's U-Net is
trained on such diptychs), so that both halves show one person.

In the paper's order: (design 3) an identity portrait (the paper's FFHQ photo: here a world render of an
identity drawn from the world's distribution) gives c_id, two word embeddings from the identity encoder put
before "[X]" in every prompt; (design 2) a pose drawing (the paper's: one of 1,000 candidates from generated
"a person, head shot" images; here one of 1,000 candidates from the world's pose distribution, since
toon-64 draws its own figures in the world's poses and has no pose estimator) repeated on both halves
conditions the pose ControlNet; (design 1) the predicted noise combines three classifier-free-guided
predictions, Eq. 2: s'_d for the shared prompt p on the whole canvas, s'_a for p_a on the left half, s'_b for
p_b on the right.

Each pair is seeded by its direction and index alone, so a set made by several processes is the one one
process makes; a set is resumable, a pair's image and record written together.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...engine.conditioning import (Condition, control_map, decode_latents, encode_text, encode_text_with_words,
                                    predict_noise)
from ...engine.ddim import ddim_sample, make_schedule, seeded_noise
from ...engine.guidance import composed_guidance, nested_guidance
from ...engine.karras import karras_sample, make_karras_schedule
from ...files import write_together
from ...world import (ToonRecord, captions, diptych_caption, draw_pose, pose_keypoints, record_seed, render,
                      sample_record)
from ...world.attributes import POSE_FIELDS
from ...world.edits import PAIR_DIRECTIONS
from .model import clip_image_tokens

IDENTITY_SEED = 31_000_000  # the identity portraits of pair j (the same person in every direction)
POSE_SEED, POSE_CANDIDATES = 32_000_000, 1000  # supp. §1.1: one of 1,000 candidate poses per pair
CONFIG_FILE = "pairs_config.json"


@dataclass(frozen=True)
class PairConfig:
    steps: int = 20  # supp. §1.1: T = 20
    guidance_scale: float = 7.5  # supp. §1.1
    shared_weight: float = 0.1  # s'_d of Eq. 2 (supp. §1.1)
    half_weight: float = 0.9  # s'_a = s'_b (supp. §1.1)
    pose: bool = True  # design (2); off: Fig. 3 (b)
    identity: bool = True  # design (3); off: Fig. 3 (c)
    sampler: str = "karras"  # supp. §1.1: the stochastic Karras sampler; "ddim": deterministic DDIM

    def __post_init__(self):
        if self.sampler not in ("karras", "ddim"):
            raise ValueError(f"sampler must be karras or ddim, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class PairDirection:
    """An editing direction, e.g. costume normal -> santa (§4 "Datasets": four targets per task)."""
    attribute: str
    source: str
    target: str

    @property
    def name(self) -> str:
        return f"{self.attribute}={self.target}"

    @classmethod
    def parse(cls, text: str) -> "PairDirection":
        attribute, _, target = text.partition("=")
        if attribute not in PAIR_DIRECTIONS:
            raise ValueError(f"{text!r}: the pair directions edit {' or '.join(PAIR_DIRECTIONS)} (e.g. costume=santa)")
        source, targets = PAIR_DIRECTIONS[attribute]
        if target not in targets:
            raise ValueError(f"{text!r}: {attribute} goes from {source} to one of {', '.join(targets)}")
        return cls(attribute, source, target)


def identity_record(index: int, seed: int = 0) -> ToonRecord:
    """The person of pair `index` (the same in every direction): the record its identity portrait renders."""
    return sample_record(record_seed(IDENTITY_SEED + seed, index))


def pose_drawing(index: int, direction: PairDirection, seed: int = 0) -> tuple[np.ndarray, ToonRecord]:
    """The pose candidate of a pair, drawn twice side by side (64 x 128), and the record it comes from."""
    pick = np.random.default_rng([seed, index, zlib.crc32(direction.name.encode())]).integers(POSE_CANDIDATES)
    rec = sample_record(record_seed(POSE_SEED, int(pick)))
    pose = draw_pose(pose_keypoints(rec))
    return np.concatenate([pose, pose], 1), rec


def pair_prompts(person: ToonRecord, direction: PairDirection) -> tuple[str, str, str]:
    """(p, p_a, p_b), supp. §1.1: "the same [X] on the left and right", "a [X], [Y]", "a [X], [Z]"."""
    source = person.replace(**{direction.attribute: direction.source})
    target = person.replace(**{direction.attribute: direction.target})
    template = direction.attribute
    return diptych_caption(person.presentation), captions(source)[template], captions(target)[template]


@torch.no_grad()
def generate_pair(backbone, identity_encoder, direction: PairDirection, index: int, config: PairConfig = PairConfig(),
                  seed: int = 0) -> dict:
    """One pair: {"image": uint8 64 x 128 x 3 canvas [x_A, x_B], "record": what made it}."""
    person = identity_record(index, seed)
    p, p_a, p_b = pair_prompts(person, direction)
    if config.identity:  # design (3): c_id before "[X]" in p, p_a, p_b (supp. §1.1)
        if identity_encoder is None:
            raise ValueError("pairs with identity embeddings need the identity encoder (or identity=False)")
        portrait = render(person.replace(costume="normal", expression="neutral")).image  # an everyday photo, as FFHQ's
        tokens = clip_image_tokens(backbone.clip, backbone.clip_processor, portrait[None])
        words = identity_encoder(tokens)
        text = torch.cat([encode_text(backbone, [""]),
                          encode_text_with_words(backbone, [p, p_a, p_b], person.presentation, words)])
    else:
        text = encode_text(backbone, ["", p, p_a, p_b])
    pose, pose_rec = pose_drawing(index, direction, seed)
    controls = {"pose": (control_map(backbone, pose), 1.0)} if config.pose else {}  # design (2), in every branch
    branches = [Condition(t[None], controls) for t in text]
    size = backbone.unet.config.sample_size
    like = torch.empty(0, device=backbone.device, dtype=backbone.dtype)
    noise_seed = zlib.crc32(f"{seed}/{direction.name}/{index}".encode())
    x = seeded_noise((1, backbone.unet.config.in_channels, size, 2 * size), noise_seed, like)
    left = torch.zeros(1, 1, size, 2 * size, device=like.device, dtype=like.dtype)
    left[..., :size] = 1
    weights, masks = [config.shared_weight, config.half_weight, config.half_weight], [1.0, left, 1 - left]

    def eps(x_t, t):  # Eq. 2: s'_d eps~(p) + s'_a M'_a eps~(p_a) + s'_b M'_b eps~(p_b)
        e_null, *e = predict_noise(backbone, x_t, t, branches)
        return composed_guidance([nested_guidance([e_null, e_k], [config.guidance_scale]) for e_k in e], weights,
                                 masks)

    if config.sampler == "karras":
        z = karras_sample(eps, x, make_karras_schedule(backbone.scheduler_config, config.steps),
                          generator=torch.Generator().manual_seed(noise_seed))
    else:
        z = ddim_sample(eps, x, make_schedule(backbone.scheduler_config, config.steps))
    record = {"direction": direction.name, "index": index, "seed": seed, "prompts": [p, p_a, p_b],
              "identity": person.to_dict(), "pose": {k: getattr(pose_rec, k) for k in (*POSE_FIELDS, "face_shape")},
              "config": asdict(config)}
    return {"image": decode_latents(backbone, z)[0], "record": record}


def pair_items(directions: list[PairDirection], n: int, process_index: int = 0,
               num_processes: int = 1) -> list[tuple[PairDirection, int]]:
    """This process's share of every (direction, index) of a set."""
    items = [(d, j) for d in directions for j in range(n)]
    return items[process_index::num_processes]


def pair_path(out: Path, direction: PairDirection, index: int) -> Path:
    return Path(out) / direction.name.replace("=", "-") / f"{index:06d}"


def write_pairs(backbone, identity_encoder, directions: list[PairDirection], n: int, out, config: PairConfig,
                seed: int = 0, process_index: int = 0, num_processes: int = 1, progress=None) -> int:
    """Generate this process's share of the set into `out` (DIRECTION/NNNNNN.png and .json), skipping pairs
    already there; returns the number made. A set is made under one configuration throughout."""
    out = Path(out)
    settings = {"config": asdict(config), "seed": seed, "model": backbone.name}
    cfg_file = out / CONFIG_FILE
    if cfg_file.exists():
        before = json.loads(cfg_file.read_text())
        if before != settings:
            raise ValueError(f"{out} holds pairs made with {before}; these would be made with {settings}: "
                             "give another --out")
    elif process_index == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg_file.write_text(json.dumps(settings, indent=2))
    made = 0
    for direction, j in pair_items(directions, n, process_index, num_processes):
        base = pair_path(out, direction, j)
        if not base.with_suffix(".json").exists():
            pair = generate_pair(backbone, identity_encoder, direction, j, config, seed)
            write_together([(base.with_suffix(".png"), lambda p: Image.fromarray(pair["image"]).save(p, format="PNG")),
                            (base.with_suffix(".json"), lambda p: p.write_text(json.dumps(pair["record"], indent=1)))])
            made += 1
        if progress is not None:
            progress(direction, j)
    return made


def read_pairs(folder) -> list[dict]:
    """Every finished pair of a set: its record with "left" and "right" (uint8 64 x 64 x 3 halves)."""
    pairs = []
    for rec_file in sorted(Path(folder).glob("*/*.json")):
        image = np.asarray(Image.open(rec_file.with_suffix(".png")).convert("RGB"))
        w = image.shape[1] // 2
        pairs.append({**json.loads(rec_file.read_text()), "left": image[:, :w], "right": image[:, w:]})
    return pairs

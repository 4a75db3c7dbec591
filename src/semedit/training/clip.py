"""The toon-64 tokenizer (CLIP BPE format, trained on world captions) and a small CLIP trained
contrastively on world images and captions (text tower conditions the U-Net; the joint space
serves DeltaEdit, MCDM image embeddings and the CLIP score)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.clip_metrics import retrieval_top1, zero_shot_accuracy
from ..models.images import to_tensor
from ..models.text import tokenize
from ..models.toon64 import CLIP_TEXT_CONFIG, CLIP_VISION_CONFIG
from ..world import CAPTION_FIELDS, captions, describe, diptych_caption, record_seed, sample_record
from ..world.attributes import observable
from .captions import training_fields
from .data import RenderCache
from .loop import TrainConfig, TrainRun

CLIP_TRAIN = TrainConfig(steps=2400, batch_size=128, lr=5e-4, warmup=200, weight_decay=0.1, checkpoint_every=500,
                         seed=0)
# The recipe's text-attribute loss weight (`AttributeHeads` on the text tower): without it the text
# tower merges the face words and the U-Net cannot follow them (model card, CLIP and U-Net sections).
TEXT_ATTRIBUTE_WEIGHT = 1.0
HARD_NEGATIVE_SHARE = 0.5  # share of a batch's images that also meet a one-attribute-off caption
IMAGE_MEAN = [0.5, 0.5, 0.5]  # CLIPImageProcessor settings for toon-64: images in [-1, 1]
IMAGE_STD = [0.5, 0.5, 0.5]



def caption_corpus(n_records: int = 4000, seed: int = 0) -> list[str]:
    """Captions the tokenizer is trained on: full, partial (random field subsets) and template captions."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_records):
        rec = sample_record(record_seed(seed, i))
        out.extend(captions(rec).values())
        k = int(rng.integers(1, len(CAPTION_FIELDS)))
        out.append(describe(rec, ["presentation"] + list(rng.choice(CAPTION_FIELDS[1:], k, replace=False))))
        out.append(diptych_caption(rec.presentation))
    return out


def train_tokenizer(out_dir: str | Path, vocab_size: int = 1024, seed: int = 0):
    """Train a byte-level BPE on world captions through CLIPTokenizer's own pipeline (lower-case,
    CLIP's word splitting, `</w>` word ends, <|startoftext|> / <|endoftext|>) and save it."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    base = CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[], model_max_length=77)
    # every printable ASCII character as a word of its own, so unseen words still encode
    ascii_words = " ".join(chr(c) for c in range(33, 127))
    tok = base.train_new_from_iterator(caption_corpus(seed=seed) + [ascii_words] * 2, vocab_size=vocab_size,
                                       initial_alphabet=list(bytes_to_unicode().values()), min_frequency=2)
    tok.save_pretrained(out_dir)
    return tok


def caption_labels(rec, fields, rng: np.random.Generator) -> dict[str, int]:
    """{attribute: value index} for the attributes a caption of `fields` pins down: those whose
    caption changes when the value does (one other value tried, drawn by `rng`)."""
    from ..world import CATEGORICAL, with_other_value

    text, out = describe(rec, fields), {}
    for attr, values in CATEGORICAL.items():
        changed = with_other_value(rec, attr, rng)
        if changed is not None and describe(changed, fields) != text:
            out[attr] = values.index(getattr(rec, attr))
    return out


# Attributes whose hard-negative captions are drawn (the small face parts first: in-batch
# negatives almost always differ in hair or background, so without these CLIP ignores faces).
HARD_NEGATIVE_FIELDS = {"expression": 3, "glasses": 2, "eyes": 1, "mouth": 1, "gaze": 1, "hair": 1, "costume": 1,
                        "background": 1, "beard": 1}


def hard_negatives(rec, rng: np.random.Generator, every_value: bool = False) -> tuple[tuple[str, ...], list]:
    """Caption fields and copies of `rec` with one attribute changed whose captions of those fields
    differ: their captions are hard negatives for `rec`'s image. One copy (a random other value), or
    with `every_value` one per other value the world allows, so the image must pick its value among
    all of them as zero-shot classification does (one random negative teaches it one pair a step)."""
    from ..world import CATEGORICAL, with_other_value, with_value

    names, weights = list(HARD_NEGATIVE_FIELDS), np.array(list(HARD_NEGATIVE_FIELDS.values()), float)
    for _ in range(20):
        f = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        attr = {"hair": "hair_colour"}.get(f, f)
        if every_value:
            negatives = [neg for v in CATEGORICAL[attr] if v != getattr(rec, attr)
                         if (neg := with_value(rec, attr, v)) is not None]
        else:
            negatives = [neg] if (neg := with_other_value(rec, attr, rng)) is not None else []
        if not negatives:
            continue
        k = int(rng.integers(0, 4))
        others = [c for c in CAPTION_FIELDS[1:] if c != f]
        fields = ["presentation", f, *rng.choice(others, k, replace=False)]
        negatives = [neg for neg in negatives if describe(neg, fields) != describe(rec, fields)]
        if negatives:
            return tuple(fields), negatives
    return CAPTION_FIELDS, []


def contrastive_loss_with_negatives(logits_per_image: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE when the text set holds the N positives (text i for image i) followed
    by extra hard-negative captions: images choose among all texts, texts among the images."""
    n = logits_per_image.shape[0]
    target = torch.arange(n, device=logits_per_image.device)
    return 0.5 * (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_image[:, :n].T, target))


def image_labels(rec) -> dict[str, int]:
    """{attribute: value index} for every attribute the image shows (`observable`)."""
    from ..world import CATEGORICAL

    seen = observable(rec)
    return {a: values.index(getattr(rec, a)) for a, values in CATEGORICAL.items() if seen[a]}


class AttributeHeads(torch.nn.Module):
    """One linear head per world attribute on a tower's pooled state. On the text tower (the
    end-of-text token's last hidden state) it makes the tower keep every attribute a caption names
    apart, which in-batch negatives never require of the small face words (model card: the U-Net
    cannot follow words its text encoder merges); on the vision tower (the class token) it makes
    the image features carry the small face parts that zero-shot classification needs."""

    def __init__(self, width: int):
        from ..world import CATEGORICAL

        super().__init__()
        self.heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(v)) for a, v in CATEGORICAL.items()})

    def loss(self, pooled: torch.Tensor, labels: list[dict[str, int]]) -> torch.Tensor:
        """Mean cross-entropy over every (row, labelled attribute) pair."""
        terms = []
        for attr, head in self.heads.items():
            rows = [i for i, lab in enumerate(labels) if attr in lab]
            if rows:
                target = torch.tensor([labels[i][attr] for i in rows], device=pooled.device)
                terms.append(F.cross_entropy(head(pooled[rows]), target, reduction="sum"))
        return torch.stack(terms).sum() / sum(len(lab) for lab in labels)


class CLIPWithAttributeHeads(torch.nn.Module):
    """What trains when an attribute loss is on: the CLIP and its heads (checkpointed together,
    never saved with the CLIP). Either head set may be None (its loss off)."""

    def __init__(self, clip, text_heads: AttributeHeads | None, image_heads: AttributeHeads | None):
        super().__init__()
        self.clip, self.text_heads, self.image_heads = clip, text_heads, image_heads

    def forward(self, text_labels: list[dict[str, int]], image_labels: list[dict[str, int]], **batch):
        """CLIP's output and {name: loss} of the captions' `text_labels` (`caption_labels`) and the
        images' `image_labels`."""
        out, losses = self.clip(**batch), {}
        if self.text_heads is not None:
            losses["text_attribute_loss"] = self.text_heads.loss(out.text_model_output.pooler_output, text_labels)
        if self.image_heads is not None:
            losses["image_attribute_loss"] = self.image_heads.loss(out.vision_model_output.pooler_output,
                                                                   image_labels)
        return out, losses


def build_clip(vocab_size: int):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=dict(CLIP_TEXT_CONFIG, vocab_size=vocab_size, bos_token_id=0, eos_token_id=1,
                                      pad_token_id=1),
                     vision_config=CLIP_VISION_CONFIG, projection_dim=CLIP_TEXT_CONFIG["projection_dim"])
    return CLIPModel(cfg)


def train_clip(cache_dir: str | Path, tokenizer_dir: str | Path, run_dir: str | Path, out_dir: str | Path,
               cfg: TrainConfig = CLIP_TRAIN, resume: bool = True, eval_n: int = 1000,
               write_text_encoder: bool = True, text_attribute_weight: float = 0.0,
               image_attribute_weight: float = 0.0, init_from: str | Path | None = None,
               freeze_text_tower: bool = False, every_value_negatives: bool = False) -> dict:
    """Contrastive CLIP training with hard negatives, from scratch or from the CLIP in `init_from`;
    with `text_attribute_weight` / `image_attribute_weight` > 0 also the attribute losses
    (`AttributeHeads`) of either tower, weighted by them. `freeze_text_tower` keeps the text tower
    (what a trained U-Net reads) fixed and trains the vision tower and both projections;
    `every_value_negatives`: see `hard_negatives`."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTextModel

    from ..models.text import load_tokenizer

    if freeze_text_tower and (init_from is None or text_attribute_weight > 0):
        raise ValueError("freeze_text_tower needs init_from (a trained text tower) and no text attribute loss")
    tokenizer = load_tokenizer(tokenizer_dir)
    train, heldout = RenderCache(Path(cache_dir) / "train"), RenderCache(Path(cache_dir) / "heldout")
    torch.manual_seed(cfg.seed)
    if init_from is not None:
        model = CLIPModel.from_pretrained(init_from, torch_dtype=torch.float32)
    else:
        model = build_clip(len(tokenizer))
    model.text_model.requires_grad_(not freeze_text_tower)
    with_heads = text_attribute_weight > 0 or image_attribute_weight > 0
    if with_heads:
        model = CLIPWithAttributeHeads(
            model, AttributeHeads(model.config.text_config.hidden_size) if text_attribute_weight > 0 else None,
            AttributeHeads(model.config.vision_config.hidden_size) if image_attribute_weight > 0 else None)
    run = TrainRun(run_dir, cfg, model, "clip", resume=resume)
    images = train.arrays["image"]
    weights = {"text_attribute_loss": text_attribute_weight, "image_attribute_loss": image_attribute_weight}

    def clip_of(module):
        return module.clip if isinstance(module, CLIPWithAttributeHeads) else module

    def loss_fn(step, g):
        idx = np.sort(torch.randint(len(train), (cfg.batch_size,), generator=g).numpy())
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=g)))
        captioned = [(train.records[i], training_fields(rng)) for i in idx]  # (record, caption fields)
        for j in range(int(round(HARD_NEGATIVE_SHARE * len(idx)))):  # these images also meet hard negatives
            fields, negatives = hard_negatives(train.records[idx[j]], rng, every_value_negatives)
            captioned[j] = (train.records[idx[j]], fields)
            captioned += [(neg, fields) for neg in negatives]  # after the batch's positives
        texts = [describe(rec, fields) for rec, fields in captioned]
        batch = dict(pixel_values=to_tensor(images[idx]).to(run.device), **tokenize(tokenizer, texts, run.device))
        if not with_heads:
            return contrastive_loss_with_negatives(run.module(**batch).logits_per_image), {}
        text_labels = [caption_labels(rec, fields, rng) for rec, fields in captioned] if text_attribute_weight else []
        images_labels = [image_labels(train.records[i]) for i in idx] if image_attribute_weight else []
        out, losses = run.module(text_labels=text_labels, image_labels=images_labels, **batch)
        loss = contrastive_loss_with_negatives(out.logits_per_image) + sum(weights[k] * v for k, v in losses.items())
        return loss, {k: v.detach() for k, v in losses.items()}

    held_images = np.asarray(heldout.arrays["image"][:eval_n])
    held_records = heldout.records[:eval_n]

    def probe(step):
        acc = zero_shot_accuracy(clip_of(run.unwrapped()), tokenizer, held_images[:300], held_records[:300],
                                 ["expression", "hair_colour", "glasses", "costume", "background"])
        return {f"zeroshot_{k}": v for k, v in acc.items()}

    run.run(loss_fn, on_checkpoint=probe)
    model = clip_of(run.final_module()).float().eval()
    report = {"params": sum(t.numel() for t in model.parameters()), "steps": run.step,
              "zero_shot_heldout": zero_shot_accuracy(model, tokenizer, held_images, held_records),
              "retrieval_top1_of_100": retrieval_top1(model, tokenizer, held_images, held_records)}
    out_dir = Path(out_dir)
    model.to("cpu", torch.float16).save_pretrained(out_dir / "clip", safe_serialization=True)
    if write_text_encoder:  # the text tower alone conditions the U-Net, as text_encoder/ of an SD folder
        text_encoder = CLIPTextModel(model.config.text_config)
        text_encoder.load_state_dict(model.text_model.state_dict())
        text_encoder.to(torch.float16).save_pretrained(out_dir / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "clip")
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, image_mean=IMAGE_MEAN,
                       image_std=IMAGE_STD).save_pretrained(out_dir / "clip")
    (Path(run_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report

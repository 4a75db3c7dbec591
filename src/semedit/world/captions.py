"""Captions of a toon record: a full description and the papers' prompt templates.

Grammar (every part optional except the subject; parts appear in this order):

    a cartoon {woman|man}[ with {hair_style} {hair_colour} hair | , bald][ and {eye_colour} eyes]
      [ and a {short|full} beard][, {skin_tone} skin][, {face_shape} face][, {expression}]
      [, eyes closed][, mouth open][, looking {left|right|straight ahead}]
      [, wearing {round|square} glasses][, {costume phrase}][, {background phrase}]

`describe(record, fields)` names exactly the given fields, so a prompt sampled from the grammar
knows which attribute values a generated image must show (`sample_prompt`).
"""

from __future__ import annotations

import numpy as np

from .attributes import CATEGORICAL, ToonRecord, sample_record

# The MCDM paper's costume and expression phrases (supplementary, "a [X], [Z]" prompts).
COSTUME_PHRASE = {
    "normal": "normal costume",
    "santa": "santa claus costume",
    "royal": "traditional golden palace costume",
    "flower": "cute flower costume",
    "sheep": "cute white sheep costume",
}
EXPRESSION_PHRASE = {"neutral": "neutral expression", "smiling": "smiling", "laughing": "laughing",
                     "angry": "angry", "shocked": "shocked", "crying": "crying"}
BACKGROUND_PHRASE = {"beach": "on a beach", "forest": "in a forest", "city": "in a city",
                     "night": "under a night sky"}
GAZE_PHRASE = {"left": "looking left", "centre": "looking straight ahead", "right": "looking right"}

# Fields a prompt can name, in grammar order.
CAPTION_FIELDS = ("presentation", "hair", "eye_colour", "beard", "skin_tone", "face_shape", "expression",
                  "eyes", "mouth", "gaze", "glasses", "costume", "background")
# "hair" names hair_style and hair_colour together; "costume" includes the shirt colour when
# normal, "background" the colour when plain.
FIELD_ATTRIBUTES = {"hair": ("hair_style", "hair_colour"), "costume": ("costume", "shirt_colour"),
                    "background": ("background", "background_colour")}


def _costume_text(rec: ToonRecord) -> str:
    if rec.costume == "normal":
        return f"wearing a {rec.shirt_colour} shirt"
    return COSTUME_PHRASE[rec.costume]


def _background_text(rec: ToonRecord) -> str:
    if rec.background == "plain":
        return f"on a plain {rec.background_colour} background"
    return BACKGROUND_PHRASE[rec.background]


def describe(rec: ToonRecord, fields=CAPTION_FIELDS) -> str:
    """A caption naming exactly `fields` (from CAPTION_FIELDS) of the record, in grammar order."""
    fields = set(fields)
    unknown = fields - set(CAPTION_FIELDS)
    if unknown:
        raise ValueError(f"unknown caption field(s) {sorted(unknown)}; known: {', '.join(CAPTION_FIELDS)}")
    text = f"a cartoon {rec.presentation}"
    withs = []
    if "hair" in fields:
        withs.append(None if rec.hair_style == "bald" else f"{rec.hair_style} {rec.hair_colour} hair")
    if "eye_colour" in fields:
        withs.append(f"{rec.eye_colour} eyes")
    if "beard" in fields and rec.beard != "none":
        withs.append(f"a {rec.beard} beard")
    named = [w for w in withs if w]
    if named:
        text += " with " + " and ".join(named)
    parts = []
    if "hair" in fields and rec.hair_style == "bald":
        parts.append("bald")
    if "beard" in fields and rec.beard == "none" and rec.presentation == "man":
        parts.append("clean-shaven")
    if "skin_tone" in fields:
        parts.append(f"{rec.skin_tone} skin")
    if "face_shape" in fields:
        parts.append(f"{rec.face_shape} face")
    if "expression" in fields:
        parts.append(EXPRESSION_PHRASE[rec.expression])
    if "eyes" in fields and rec.eyes == "closed":
        parts.append("eyes closed")
    if "mouth" in fields and rec.mouth == "open":
        parts.append("mouth open")
    if "gaze" in fields and rec.eyes == "open":
        parts.append(GAZE_PHRASE[rec.gaze])
    if "glasses" in fields:
        parts.append("no glasses" if rec.glasses == "none" else f"wearing {rec.glasses} glasses")
    if "costume" in fields:
        parts.append(_costume_text(rec))
    if "background" in fields:
        parts.append(_background_text(rec))
    return ", ".join([text] + parts)


def captions(rec: ToonRecord) -> dict[str, str]:
    """All captions of a record.

    - `full`: every caption field;
    - `short`: subject, hair and expression ("a cartoon man with short red hair, laughing");
    - `costume` / `expression`: the MCDM paper's templates ("a woman, santa claus costume");
    - `subject` / `scene`: the subject without the background, and the background alone (the
      LayerDiffusion paper's object / background layers).
    """
    subject_fields = [f for f in CAPTION_FIELDS if f != "background"]
    return {
        "full": describe(rec),
        "short": describe(rec, ("presentation", "hair", "expression")),
        "costume": f"a {rec.presentation}, {COSTUME_PHRASE[rec.costume]}",
        "expression": f"a {rec.presentation}, {EXPRESSION_PHRASE[rec.expression]}",
        "subject": describe(rec, subject_fields),
        "scene": _background_text(rec).split(" ", 1)[1],
    }


def layer_captions(rec: ToonRecord) -> tuple[str, str]:
    """The subject and background parts of a record's caption (T_a and T_b of the LayerDiffusion paper,
    §3.2.1). The background part names the person too ("a cartoon woman, on a beach"): toon-64's text
    encoder only ever saw captions that start with the person."""
    return captions(rec)["subject"], describe(rec, ("presentation", "background"))


def diptych_caption(presentation: str) -> str:
    """The MCDM paper's shared prompt for a pair canvas (supplementary: "the same [X] on the left and right")."""
    return f"the same {presentation} on the left and right"


def named_attributes(rec: ToonRecord, fields) -> dict[str, str]:
    """The attribute values a caption naming `fields` commits to (what an evaluator should find)."""
    out = {}
    for f in fields:
        if f == "presentation":
            out["presentation"] = rec.presentation
        elif f == "hair":
            out["hair_style"] = rec.hair_style
            if rec.hair_style != "bald":
                out["hair_colour"] = rec.hair_colour
        elif f == "beard":
            if rec.presentation == "man":
                out["beard"] = rec.beard
        elif f == "gaze":
            if rec.eyes == "open":
                out["gaze"] = rec.gaze
        elif f == "costume":
            out["costume"] = rec.costume
            if rec.costume == "normal":
                out["shirt_colour"] = rec.shirt_colour
        elif f == "background":
            out["background"] = rec.background
            if rec.background == "plain":
                out["background_colour"] = rec.background_colour
        else:
            out[f] = getattr(rec, f)
    return out


def sample_prompt(seed, min_fields: int = 2, max_fields: int = 5) -> tuple[str, dict[str, str]]:
    """A prompt from the caption grammar naming a random subset of fields, and the attribute
    values it names (for checking generated images)."""
    rng = np.random.default_rng(seed)
    rec = sample_record(rng)
    optional = [f for f in CAPTION_FIELDS if f != "presentation"]
    k = int(rng.integers(min_fields, max_fields + 1))
    chosen = ["presentation"] + [optional[i] for i in sorted(rng.choice(len(optional), k, replace=False))]
    return describe(rec, chosen), named_attributes(rec, chosen)


assert set(EXPRESSION_PHRASE) == set(CATEGORICAL["expression"])
assert set(COSTUME_PHRASE) == set(CATEGORICAL["costume"])


# caption field that names each attribute
ATTRIBUTE_FIELD = {"hair_style": "hair", "hair_colour": "hair", "shirt_colour": "costume",
                   "background_colour": "background"}
_ENABLE = {"shirt_colour": {"costume": "normal"}, "background_colour": {"background": "plain"},
           "gaze": {"eyes": "open"}, "beard": {"presentation": "man"}, "hair_colour": {}}


def value_prompts(attr: str, n_bases: int = 12) -> dict[str, list[str]]:
    """Prompts naming each value of a categorical attribute (for zero-shot classification):
    `describe(record, ["presentation", field])` over a few base records, so the other words of
    the field (e.g. the hair style next to a hair colour) vary and average out."""
    from .attributes import CATEGORICAL

    field = ATTRIBUTE_FIELD.get(attr, attr)
    if attr not in CATEGORICAL or field not in CAPTION_FIELDS:
        raise ValueError(f"no caption field names {attr!r}")
    out = {}
    for value in CATEGORICAL[attr]:
        prompts = []
        for i in range(n_bases):
            rec = sample_record(1000 + i).replace(**_ENABLE.get(attr, {}))
            if attr == "hair_colour" and rec.hair_style == "bald":
                rec = rec.replace(hair_style="short")
            if attr == "presentation" and value == "woman":
                rec = rec.replace(beard="none")
            p = describe(rec.replace(**{attr: value}), ["presentation", field])
            if p not in prompts:
                prompts.append(p)
        out[value] = prompts
    return out

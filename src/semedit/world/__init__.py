"""The procedural toon world: attribute records, rendering and maps, captions, ground-truth edits,
diptychs and dataset export. Pure numpy/PIL (torch datasets over it: `semedit.training.datasets`)."""

from .attributes import (CATEGORICAL, IDENTITY_FIELDS, POSE_RANGES, ToonRecord, identity_agreement, observable,
                         record_seed, sample_record, with_other_value, with_value)
from .captions import CAPTION_FIELDS, captions, describe, diptych_caption, layer_captions, sample_prompt
from .edits import EDIT_CLASSES, Diptych, GroundTruthEdit, diptych, ground_truth_edit, region_of, sample_pair
from .export import export_dataset, read_export, read_toon_record, save_toon_png
from .maps import LAYOUT_KINDS, draw_pose, layout_map, resize_square, scribble_map
from .render import SEG_CLASSES, SEG_PALETTE, ToonRender, colourise_seg, pose_keypoints, render

__all__ = [
    "CATEGORICAL", "IDENTITY_FIELDS", "POSE_RANGES", "ToonRecord", "identity_agreement", "observable", "record_seed",
    "sample_record", "with_other_value", "with_value",
    "CAPTION_FIELDS", "captions", "describe", "diptych_caption", "layer_captions", "sample_prompt",
    "EDIT_CLASSES", "Diptych", "GroundTruthEdit", "diptych", "ground_truth_edit", "region_of", "sample_pair",
    "export_dataset", "read_export", "read_toon_record", "save_toon_png", "LAYOUT_KINDS", "draw_pose", "layout_map",
    "resize_square", "scribble_map",
    "SEG_CLASSES", "SEG_PALETTE", "ToonRender", "colourise_seg", "pose_keypoints", "render",
]

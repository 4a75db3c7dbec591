"""Segment Anything (transformers' `SamModel`) from a folder or hub id the user names: the subject mask of a
picture, as the LayerDiffusion paper takes its masks from SAM (§3.2.1-3.2.2)."""

from __future__ import annotations

import numpy as np
import torch


def load_sam(name_or_path: str, device: str | torch.device = "cpu"):
    """(SamModel, SamProcessor) from a local folder or a hub id; a clear error if neither loads."""
    from transformers import SamModel, SamProcessor

    from .backbone import BackboneNotFound, resolve_folder

    folder = resolve_folder(name_or_path, "SAM model")
    try:
        model = SamModel.from_pretrained(folder, use_safetensors=True).to(device).eval()
        processor = SamProcessor.from_pretrained(folder)
    except Exception as e:  # a folder without SAM's files, or a damaged one
        raise BackboneNotFound(f"cannot load a SAM model from {folder} ({type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
    return model, processor


@torch.no_grad()
def sam_subject_mask(sam, image: np.ndarray) -> np.ndarray:
    """The subject of a uint8 HxWx3 picture (bool HxW): SAM prompted with one point at the picture's centre,
    where a portrait's or a product shot's subject is, keeping the best of its three masks by predicted IoU."""
    model, processor = sam
    h, w = image.shape[:2]
    inputs = processor(images=image, input_points=[[[[w / 2, h / 2]]]], return_tensors="pt").to(model.device)
    out = model(**inputs, multimask_output=True)
    masks = processor.image_processor.post_process_masks(out.pred_masks.cpu(), inputs["original_sizes"].cpu(),
                                                         inputs["reshaped_input_sizes"].cpu())[0][0]  # (3, H, W)
    return masks[int(out.iou_scores[0, 0].argmax())].numpy().astype(bool)

"""Pixel-wise guidance (Matsunaga et al., "Fine-grained Image Editing by Pixel-wise Guidance Using
Diffusion Models"): the user edits a segmentation map; pixel classifiers on the U-Net's decoder
features guide a DDPM run towards it inside the region of the change, and the input, noised to
each level, is kept outside.

In the paper's order (§3.2, Fig. 2, Algorithm 1): the source map y (estimated by g_multi, or
given); the ROI m of the change, dilated; the input DDIM-inverted to t0 (Eq. 4); t0 .. 1 DDPM steps
whose mean moves by s Sigma grad log p(y_edited | x_t) of g_t over the ROI (Eq. 8-9), blended with
the noised input outside m (Eq. 10-11).

On a latent model the ROI lives on the latent grid: a latent cell is guided if any of its pixels is
in the pixel ROI. The decoded picture then keeps the input's own pixels outside the pixel ROI
(`keep_outside`; a pixel-space model such as the paper's ADM needs no such step), so the outside is
exactly the input's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.conditioning import decode_latents, encode_image, encode_text
from ...engine.counting import phase
from ...engine.ddim import alphas_cumprod, ddim_invert, ddim_sample, ddpm_sample, make_schedule, q_sample, seeded_noise
from ...engine.features import features_at, noise_and_features, pixel_features
from ...engine.masks import blend, dilate, resize
from ..base import EditRequest, EditResult, MethodConfig, provenance, register, setting, trained_part_folder
from .model import FOLDER, PixelClassifiers, load_pixel_classifiers

PAPER_SIZE = 256  # the paper's images; its pixel counts scale with the image area
LARGE_ROI_PIXELS = 5000  # §4.4 / supp. B.6: above this many ROI pixels (at 256x256) the edit is "large"
SMALL_EDIT = (500, 100.0)  # (t0, s) for small ROIs, §4.1 "Implementation"
LARGE_EDIT = (750, 40.0)  # (t0, s) for large ROIs
DILATION = 3  # pixels of buffer around the ROI at 256x256 (§3.2; the official code: 3x3 kernel, 3 times)


@dataclass
class PixelGuideConfig(MethodConfig):
    t0: int | None = setting(None, "timestep (of 1000) the guided denoising starts from; none: by ROI size, "
                                   "500 small, 750 large (§4.1, §4.4)", lo=1, hi=999)
    scale: float | None = setting(None, "guidance scale s of Eq. 9; none: by ROI size, 100 small, 40 large (§4.1)",
                                  lo=0, hi=10000)
    steps: int = setting(50, "DDPM steps over the whole schedule (the classifiers g_t are trained at this "
                             "grid's timesteps; other grids use the nearest)", lo=1, hi=1000)
    large_roi: int | None = setting(None, "ROI pixels above which an edit is large; none: the paper's 5,000 at "
                                          "256x256 scaled to the image area", lo=1)
    dilation: int | None = setting(None, "pixels the ROI grows by; none: the paper's 3 at 256x256 scaled to the "
                                         "image size (at least 1)", lo=0, hi=64)
    keep_outside: bool = setting(True, "keep the input's pixels outside the ROI in the decoded picture (a latent "
                                       "model's decoder redraws every pixel otherwise)")
    interpolation_frames: int = setting(0, "also interpolate between the input and the edit at t0 in this many "
                                           "frames (§4.3, Fig. 6)", lo=0, hi=64)
    classifiers: str | None = setting(None, "folder of the pixel classifiers; none: the model family's "
                                            f"{FOLDER}/")


def classifiers_for(backbone, config: PixelGuideConfig) -> PixelClassifiers:
    folder = trained_part_folder(backbone, config.classifiers, FOLDER, "pixel classifiers", "classifiers")
    try:
        classifiers = load_pixel_classifiers(folder, backbone.device)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    if classifiers.config.image_size != backbone.image_size:
        raise ValueError(f"the pixel classifiers in {folder} were trained for {classifiers.config.image_size} px "
                         f"images, the model makes {backbone.image_size} px")
    return classifiers


def check_map(seg, classes: int, what: str) -> np.ndarray:
    """Class ids the classifiers know (the map's size is checked with the request, `EditRequest.validate`)."""
    m = np.asarray(seg)
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class ids, got {m.dtype}")
    bad = np.unique(m[(m < 0) | (m >= classes)])
    if bad.size:
        raise ValueError(f"{what} has unknown class id(s) {', '.join(map(str, bad[:8]))}; the classifiers know "
                         f"0..{classes - 1}")
    return m.astype(np.int64)


@torch.no_grad()
def estimate_segmentation(backbone, classifiers: PixelClassifiers, z0: torch.Tensor, seed: int = 0) -> np.ndarray:
    """The segmentation map (HxW class ids) of a latent by g_multi: the image noised to each of the
    classifiers' multi timesteps (one noise, Eq. 6), their decoder features concatenated (Fig. 2 b)."""
    ts = list(classifiers.config.multi_timesteps)
    ac = alphas_cumprod(backbone.scheduler_config)
    noise = seeded_noise(z0.shape, seed, z0)
    x = torch.cat([q_sample(z0, noise, ac[t]) for t in ts])
    text = encode_text(backbone, [classifiers.config.prompt])
    size = (backbone.image_size,) * 2
    _, store = noise_and_features(backbone.unet, list(classifiers.config.blocks), x, ts, text)
    f = torch.cat(list(pixel_features(store, size)), dim=0).flatten(1).T  # H*W x (timesteps * D), t-major
    return classifiers.g_multi(f).argmax(-1).view(size).cpu().numpy()


def edit_region(source: np.ndarray, edited: np.ndarray, dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """The changed pixels and the ROI m: them grown by `dilation` pixels (§3.2, "as a buffer")."""
    changed = source != edited
    grown = dilate(torch.from_numpy(changed.astype(np.float32))[None, None], dilation)[0, 0].numpy() > 0
    return changed, grown


def scaled_dilation(size: int) -> int:
    """The paper's ROI buffer of 3 pixels at 256x256, scaled to `size` (at least 1)."""
    return max(1, round(DILATION * size / PAPER_SIZE))


def scaled_large_roi(size: int) -> int:
    """The paper's 5,000-pixel threshold of a large ROI at 256x256, scaled to the area of `size` x `size`."""
    return max(1, round(LARGE_ROI_PIXELS * (size / PAPER_SIZE) ** 2))


def paper_defaults(roi_pixels: int, size: int, config: PixelGuideConfig) -> tuple[int, float, int]:
    """(t0, s, threshold): the paper's small or large setting by the ROI's pixel count (§4.4), its threshold
    scaled to this image; the config's values where given."""
    large_roi = config.large_roi or scaled_large_roi(size)
    t0, s = LARGE_EDIT if roi_pixels > large_roi else SMALL_EDIT
    return (config.t0 if config.t0 is not None else t0), (config.scale if config.scale is not None else s), large_roi


def guidance_by_classifiers(backbone, classifiers, text, target: torch.Tensor, rows, cols, scale: float,
                            trace: list | None = None):
    """guidance(x, t) -> (eps, s * grad log p): the gradient of the mean cross-entropy of g_t over the ROI
    pixels against the edited map (Eq. 8), down which the mean moves (Eq. 5, 9). `trace` collects (t, the
    share of ROI pixels g_t reads as the edited class) at every step (the paper's Fig. 7)."""
    size = (backbone.image_size,) * 2

    def guidance(x, t):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            eps, store = noise_and_features(backbone.unet, list(classifiers.config.blocks), x, t, text)
            logits = classifiers.g_t(t, features_at(store, size, rows, cols)[0])
            loss = F.cross_entropy(logits, target)
            grad, = torch.autograd.grad(loss, x)
        if trace is not None:
            trace.append((int(t), float((logits.argmax(-1) == target).float().mean())))
        return eps.detach(), -scale * grad

    return guidance


@register("pixelguide", PixelGuideConfig, mask=True, segmentation=True)
def pixelguide(backbone, request: EditRequest, config: PixelGuideConfig = PixelGuideConfig(),
               seed: int = 0) -> EditResult:
    """Give the edited segmentation map (`edited_seg`; --seg, or --set for toon PNGs); the input's map is
    estimated by g_multi unless given (`source_seg`); a mask, if given, is the ROI."""
    size = backbone.image_size
    classifiers = classifiers_for(backbone, config)
    n_classes = classifiers.num_classes
    edited = check_map(request.edited_seg, n_classes, "the edited map")
    z0 = encode_image(backbone, request.image)
    # 1. the source map y (Fig. 2 b)
    if request.source_seg is not None:
        source = check_map(request.source_seg, n_classes, "the input's map")
    else:
        with phase("segmentation", len(classifiers.config.multi_timesteps)):
            source = estimate_segmentation(backbone, classifiers, z0, seed)
    # 2. the ROI m (Eq. 7), its size choosing t0 and s (§4.4)
    dilation = config.dilation if config.dilation is not None else scaled_dilation(size)
    changed, roi = edit_region(source, edited, dilation)
    if request.mask is not None:
        changed = roi = np.asarray(request.mask) > 0
    if not changed.any():
        raise ValueError("the edited map changes no pixel of the input's map: nothing to edit")
    if roi.all():
        raise ValueError("the ROI covers the whole image: nothing would be kept; edit a part of the map")
    t0, scale, large_roi = paper_defaults(int(changed.sum()), size, config)
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    start = schedule.start_index(t0 / 1000)
    roi_pixels = torch.from_numpy(roi.astype(np.float32))[None, None].to(z0)
    m = resize(roi_pixels, tuple(z0.shape[-2:]))  # a latent cell is guided if any of its pixels is in the ROI
    text = encode_text(backbone, [classifiers.config.prompt])
    # 3. DDIM inversion of the input to t0 (Eq. 4)
    eps_fn = lambda x, t: backbone.unet(x, t, encoder_hidden_states=text.expand(x.shape[0], -1, -1)).sample  # noqa: E731
    with phase("inversion", schedule.num_steps - start), torch.no_grad():
        x_t0 = ddim_invert(eps_fn, z0, schedule, start)[start]
    # 4. guided DDPM inside m, the noised input outside (Algorithm 1)
    rows, cols = (torch.from_numpy(np.nonzero(roi)[k])[None].to(z0.device) for k in (0, 1))
    target = torch.from_numpy(edited[roi]).to(z0.device)
    trace: list[tuple[int, float]] = []
    guidance = guidance_by_classifiers(backbone, classifiers, text, target, rows, cols, scale, trace)
    background_gen = torch.Generator().manual_seed(int(seed) + 1)

    def keep_background(level, x):  # Eq. 10-11 at the level reached
        noise = torch.randn(tuple(x.shape), generator=background_gen, dtype=x.dtype).to(x.device)
        return blend(x, q_sample(z0, noise, schedule.alphas[level]), m)

    with phase("guided denoising", schedule.num_steps - start):
        z = ddpm_sample(eps_fn, x_t0, schedule, start, after_step=keep_background, seed=seed, guidance=guidance)
    with torch.no_grad():
        decoded = decode_latents(backbone, z)[0]
    image = np.where(roi[..., None], decoded, request.image) if config.keep_outside else decoded
    intermediates = {"source_map": source, "edited_map": edited, "decoded": decoded, "latents": z,
                     "inverted_latents": x_t0, "guidance_accuracy": torch.tensor(trace, dtype=torch.float64)}
    with phase("result segmentation", len(classifiers.config.multi_timesteps)):
        intermediates["result_map"] = estimate_segmentation(backbone, classifiers, encode_image(backbone, image), seed)
    if config.interpolation_frames:
        with phase("interpolation", 2 * (schedule.num_steps - start)), torch.no_grad():
            intermediates["interpolation"] = interpolate(backbone, eps_fn, x_t0, encode_image(backbone, image),
                                                         schedule, start, config.interpolation_frames)
    info = provenance("pixelguide", config, seed, backbone)
    info.update(t0=t0, scale=scale, roi_pixels=int(roi.sum()), changed_pixels=int(changed.sum()),
                large_roi_threshold=large_roi, dilation=dilation, guided_steps=schedule.num_steps - start,
                source_map="given" if request.source_seg is not None else "estimated by g_multi")
    return EditResult(image=image, mask=roi.astype(np.float32), intermediates=intermediates, provenance=info)


def interpolate(backbone, eps_fn, x_source: torch.Tensor, z_edit: torch.Tensor, schedule, start: int,
                frames: int) -> np.ndarray:
    """§4.3, Fig. 6: the edit's latent DDIM-inverted to t0 (Eq. 4), linearly interpolated with the input's,
    each mixture decoded by DDIM (Eq. 2): the frames side by side (H x frames*W x 3), from the input's
    reconstruction to the edit's."""
    x_edit = ddim_invert(eps_fn, z_edit, schedule, start)[start]
    w = torch.linspace(0, 1, frames, dtype=x_source.dtype, device=x_source.device).view(-1, 1, 1, 1)
    z = ddim_sample(eps_fn, (1 - w) * x_source + w * x_edit, schedule, start)
    return np.concatenate(list(decode_latents(backbone, z)), axis=1)

"""LayerDiffusion (Li et al., "LayerDiffusion: Layered Controlled Image Editing with Diffusion Models"):
several edits at once, of a subject and of its background, keeping the subject's identity.

In the paper's order (§3.2, Fig. 2): the target image O_t generated from the target text T; T split into
T_a (the subject's properties) and T_b (the background); the subject masks M_r of the input and M_t of the
background image (O_t, or a reference background, §4.2); layered controlled optimisation of [e_a, e_b] with
the U-Net frozen (Eq. 2) and their interpolation e_opt (Eq. 3); layered fine-tuning of the U-Net on e_opt
(Eq. 4-6); sampling from noise with iterative guidance, alternating ê_a and e_opt (Eq. 8).

Reading the paper: each masked loss is computed on the image its mask belongs to. The subject's terms
(e_a in Eq. 2, L_obj in Eq. 4) reconstruct the noised input inside M_r, so the subject keeps its
identity; the background's terms (e_b, L_bg in Eq. 5) reconstruct the background image outside its
subject, M_t, so the scene becomes the one T_b (or the reference) shows. The paper's letters pair L_obj
with M_t and L_bg with 1 - M_r; read with the input as x_t in both, the fine-tuning would rebuild the
input's own background and no background could change. docs/layered.md says more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.conditioning import Condition, GuidedNoise, decode_latents, encode_image, encode_text
from ..engine.counting import phase
from ..engine.ddim import ddim_sample, make_schedule, seeded_noise
from ..engine.finetune import DenoisingTarget, fine_tune, optimise_embeddings
from ..engine.generate import generate_latents
from ..engine.masks import resize
from .base import EditRequest, EditResult, MethodConfig, provenance, register, setting

# A background clause: the last comma-separated clause of T, starting with a preposition of place.
_SCENE = re.compile(r"^(on|in|at|under|by|near|inside|beside|against|in front of)\s+(.+)$", re.IGNORECASE)


@dataclass
class LayeredConfig(MethodConfig):
    alpha: float = setting(0.7, "alpha of Eq. 3, e_opt = alpha * ê_a + (1 - alpha) * ê_b (§3.2.1: 0.7)", lo=0, hi=1)
    embedding_steps: int = setting(500, "Adam steps of the layered controlled optimisation, Eq. 2 (§3.3, "
                                        "supp. B.1: 500)", lo=0, hi=100000)
    embedding_lr: float = setting(1e-3, "its learning rate (§3.3: 1e-3)", lo=0, lo_open=True)
    layered_optimisation: bool = setting(True, "optimise e_a and e_b by Eq. 2 (off: ê = e, the ablation "
                                               "\"w/o L-c-o\" of Table 1)")
    finetune_steps: int = setting(250, "Adam steps of the layered fine-tuning, Eq. 4-6 (§3.3, supp. B.1: 250)",
                                  lo=0, hi=100000)
    finetune_lr: float = setting(2e-6, "its learning rate (§3.3: 2e-6 for the whole U-Net)", lo=0, lo_open=True)
    lambda_obj: float = setting(2.0, "lambda_1, the weight of L_obj (Eq. 6; §4.3: 2, 3 for small subjects)", lo=0)
    lambda_bg: float = setting(1.0, "lambda_2, the weight of L_bg (Eq. 6; §4.3: 1)", lo=0)
    lora_rank: int | None = setting(None, "fine-tune LoRA adapters of this rank on the attention projections "
                                          "instead of the whole U-Net (none: the whole U-Net, as the paper)",
                                    lo=1, hi=1024)
    l_obj_image: str = setting("input", "the image L_obj (Eq. 4) reconstructs inside its subject: the input inside "
                                        "M_r (its identity; semedit's reading) or O_t inside M_t (its edited "
                                        "subject; the paper's letters pair L_obj with M_t)",
                               choices=("input", "target"))
    iterative_guidance: bool = setting(True, "alternate ê_a and e_opt between steps (Eq. 8; off: e_opt at every "
                                             "step, the ablation \"w/o I-g\")")
    steps: int = setting(50, "DDIM steps from noise, of O_t and of the edit (§3.3: 50)", lo=1, hi=1000)
    guidance_scale: float = setting(7.5, "classifier-free guidance (Stable Diffusion's default, which the paper "
                                         "runs)", lo=0, hi=50)
    negative_prompt: str = setting("", "the null branch of classifier-free guidance")
    sam: str | None = setting(None, "a SAM model (folder or hub id) for the subject masks (§3.2: SAM); none: "
                                    "the model family's pixel classifiers")
    classifiers: str | None = setting(None, "folder of the pixel classifiers that segment the subject when no "
                                             "SAM is given; none: the model family's")


def decompose(target: str) -> tuple[str, str]:
    """(T_a, T_b) of a target text (§3.2.1): T_b is its last comma-separated clause if that starts with a
    preposition of place ("on a beach", "under a night sky"), T_a the clauses before it."""
    clauses = [c.strip() for c in target.split(",") if c.strip()]
    if len(clauses) < 2 or not _SCENE.match(clauses[-1]):
        raise ValueError(f"cannot split {target!r} into a subject and a background: end it with a background "
                         "clause such as \", on a beach\", or give both parts (object and background prompts)")
    return ", ".join(clauses[:-1]), clauses[-1]


def subject_segmenter(backbone, config: LayeredConfig):
    """image (uint8 HxWx3) and its latents -> bool HxW subject mask: SAM if named, else the pixel classifiers
    (the subject is every class but the background)."""
    if config.sam is not None:
        from ..models.sam import load_sam, sam_subject_mask

        sam = load_sam(config.sam, backbone.device)
        return lambda image, latents, seed: sam_subject_mask(sam, image)
    from .pixelguide import PixelGuideConfig, classifiers_for, estimate_segmentation

    try:
        nets = classifiers_for(backbone, PixelGuideConfig(classifiers=config.classifiers))
    except ValueError as e:
        raise ValueError(f"{e}; or name a SAM model (sam=...) to find the subject") from None
    background = list(nets.config.classes).index("background")
    return lambda image, latents, seed: estimate_segmentation(backbone, nets, latents, seed) != background


def layer_masks(subject: np.ndarray, grid: tuple[int, int], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A pixel subject mask on the latent grid as the share of each cell's pixels in the subject and in the
    background: (M, 1 - M), weights of the masked losses (a cell on the outline counts in both, by its share)."""
    m = resize(torch.from_numpy(np.asarray(subject, np.float32))[None, None], grid, binary=False).to(like)
    return m, 1 - m


@register("layered", LayeredConfig, mask=True, layers=True, source=False)
@torch.no_grad()
def layered(backbone, request: EditRequest, config: LayeredConfig = LayeredConfig(), seed: int = 0) -> EditResult:
    """The target prompt T describes the whole edited picture; its subject part T_a and background part T_b
    are the request's object and background prompts, or split from T by its last clause. The mask, if
    given, is the input's subject (M_r); a reference picture, if given, is the background to take (§4.2)."""
    object_text, background_text = request.object_prompt, request.background_prompt
    if not (object_text and background_text):
        split_a, split_b = decompose(request.target_prompt)
        object_text, background_text = object_text or split_a, background_text or split_b
    if config.l_obj_image == "target" and request.reference_image is not None:
        raise ValueError("l_obj_image='target' learns O_t's subject, and with a reference background no O_t is made")
    segment = subject_segmenter(backbone, config)
    z_in = encode_image(backbone, request.image)
    grid = tuple(z_in.shape[-2:])
    schedule = make_schedule(backbone.scheduler_config, config.steps)
    null, text, e_a, e_b = encode_text(backbone, [config.negative_prompt, request.target_prompt, object_text,
                                                  background_text]).chunk(4)

    # 1. the input's subject M_r (§3.2.2), before anything is generated
    with phase("subject masks (§3.2.2)", 1):
        subject_in = np.asarray(request.mask) > 0 if request.mask is not None else segment(request.image, z_in, seed)
    if not subject_in.any():
        raise ValueError("no subject found in the input: give its mask")

    # 2. the background image: O_t generated from T (§3.2.1), or the reference background (§4.2), and its subject M_t
    if request.reference_image is None:
        z_bg = generate_latents(backbone, Condition(text), Condition(null), config.steps, config.guidance_scale, seed)
        background_image = decode_latents(backbone, z_bg)[0]
    else:
        background_image = request.reference_image
        z_bg = encode_image(backbone, background_image)

    with phase("subject masks (§3.2.2)", 1):
        subject_bg = segment(background_image, z_bg, seed)
    m_r, _ = layer_masks(subject_in, grid, z_in)
    m_t, not_m_t = layer_masks(subject_bg, grid, z_in)
    if not not_m_t.any():
        raise ValueError("the background image is all subject: no background to take from it")

    # 3. layered controlled optimisation (Eq. 2): e_a towards the input's subject, e_b towards the background
    obj, bg = DenoisingTarget(z_in, m_r), DenoisingTarget(z_bg, not_m_t)
    eq2_steps = config.embedding_steps if config.layered_optimisation else 0
    with phase("layered optimisation (Eq. 2)", eq2_steps):
        e_ab, embedding_losses = optimise_embeddings(backbone, torch.cat([e_a, e_b]), [obj, bg], eq2_steps,
                                                     config.embedding_lr, seed)
    e_a_hat, e_b_hat = e_ab.chunk(2)
    e_opt = config.alpha * e_a_hat + (1 - config.alpha) * e_b_hat  # Eq. 3

    # 4. layered fine-tuning (Eq. 4-6) on e_opt: L_obj inside M_r on the input (or inside M_t on O_t), L_bg
    #    outside M_t on the background image
    l_obj = (DenoisingTarget(z_in, m_r, config.lambda_obj) if config.l_obj_image == "input"
             else DenoisingTarget(z_bg, m_t, config.lambda_obj))
    with phase("layered fine-tuning (Eq. 4-6)", config.finetune_steps):
        tuned, finetune_losses = fine_tune(
            backbone, torch.cat([e_opt, e_opt]), [l_obj, DenoisingTarget(z_bg, not_m_t, config.lambda_bg)],
            config.finetune_steps, config.finetune_lr, seed, config.lora_rank)

    # 5. iterative guidance (Eq. 8): ê_a at even steps (t % 2 == 0 counting t = steps .. 1), e_opt otherwise
    conds = [e_a_hat if config.iterative_guidance and i % 2 == 0 else e_opt for i in range(schedule.num_steps)]
    eps_at = {t: GuidedNoise(tuned, Condition(null), Condition(c), config.guidance_scale)
              for t, c in zip(schedule.timesteps, conds)}
    x_T = seeded_noise(z_bg.shape, seed, z_in)
    with phase("iterative guidance (Eq. 8)", schedule.num_steps):
        z = ddim_sample(lambda x, t: eps_at[t](x, t), x_T, schedule)
    return EditResult(
        image=decode_latents(tuned, z)[0], mask=None,
        intermediates={
            "background_image": background_image, "subject_input": subject_in.astype(np.float32),
            "subject_background": subject_bg.astype(np.float32),
            "embeddings": e_ab,  # [ê_a, ê_b]
            "embedding_losses": torch.tensor(embedding_losses).reshape(-1, 2),
            "finetune_losses": torch.tensor(finetune_losses).reshape(-1, 2),
            "guidance_schedule": torch.tensor([float(c is e_a_hat) for c in conds]),  # 1: ê_a, 0: e_opt
            "latents": z},
        provenance={**provenance("layered", config, seed, backbone), "object_prompt": object_text,
                    "background_prompt": background_text})

"""Per-image optimisation against the denoising objective (DDPM's loss, Eq. 1 of the LayerDiffusion paper),
restricted by masks: text embeddings with the U-Net frozen (Imagic's first stage; LayerDiffusion Eq. 2), then
the U-Net's weights with the embeddings frozen (Imagic's second stage; LayerDiffusion Eq. 4-6), in full or
through LoRA adapters (peft). The backbone's own U-Net is never changed: fine-tuning trains a copy, whose
calls the active call counter counts as the backbone's."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from .counting import counted_as_unet
from .ddim import alphas_cumprod

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the attention projections (diffusers' LoRA recipes)


@dataclass(frozen=True)
class DenoisingTarget:
    """One term of a masked denoising loss: an image's clean latents (1, C, h, w), the mask (1, 1, h, w) of
    the latent cells the term covers (1: all), and the term's weight (the lambdas of Eq. 6)."""
    latents: torch.Tensor
    mask: torch.Tensor | float = 1.0
    weight: float = 1.0


def denoising_losses(unet, targets: list[DenoisingTarget], embeddings: torch.Tensor, alphas: torch.Tensor,
                     generator: torch.Generator) -> list[torch.Tensor]:
    """E_{t, eps} ||M * (eps - eps_theta(x_t, t, e))||^2 for each target with its own embedding (`embeddings`
    (K, L, D), one per target), one fresh timestep t ~ U{0..T-1} and noise each, all in one U-Net batch. Each
    term is the mean over the latent's elements (outside the mask they count as zero), unweighted."""
    z0 = torch.cat([t.latents for t in targets])
    k = z0.shape[0]
    ts = torch.randint(len(alphas), (k,), generator=generator)
    noise = torch.randn(tuple(z0.shape), generator=generator, dtype=z0.dtype).to(z0.device)
    a = alphas[ts].to(z0.device, z0.dtype).view(-1, 1, 1, 1)
    x = a.sqrt() * z0 + (1 - a).sqrt() * noise
    eps = unet(x, ts.to(z0.device), encoder_hidden_states=embeddings).sample
    return [(target.mask * (noise[i:i + 1] - eps[i:i + 1]) ** 2).mean() for i, target in enumerate(targets)]


def _optimise(params, unet, targets: list[DenoisingTarget], embeddings: torch.Tensor, steps: int, lr: float,
              scheduler_config: dict, seed: int) -> list[list[float]]:
    """Adam on `params` for `steps` steps of the targets' weighted masked denoising losses through `unet` under
    `embeddings`; returns each step's unweighted terms."""
    history = []
    if steps <= 0:
        return history
    alphas, gen = alphas_cumprod(scheduler_config), torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            terms = denoising_losses(unet, targets, embeddings, alphas, gen)
            sum(t.weight * term for t, term in zip(targets, terms)).backward()
            opt.step()
            history.append([float(t.detach()) for t in terms])
    return history


def optimise_embeddings(backbone, embeddings: torch.Tensor, targets: list[DenoisingTarget], steps: int, lr: float,
                        seed: int = 0) -> tuple[torch.Tensor, list[list[float]]]:
    """Text embeddings (K, L, D), target k's under embedding k, optimised by Adam against the weighted sum
    of the targets' masked denoising losses with the U-Net frozen (Imagic §3.1 stage A; LayerDiffusion Eq. 2).
    Returns the embeddings and each step's loss terms."""
    if embeddings.shape[0] != len(targets):
        raise ValueError(f"{embeddings.shape[0]} embeddings for {len(targets)} targets: give one each")
    e = embeddings.detach().clone().requires_grad_(True)
    history = _optimise([e], backbone.unet, targets, e, steps, lr, backbone.scheduler_config, seed)
    return e.detach(), history


def unet_copy(backbone, lora_rank: int | None = None, seed: int = 0):
    """A copy of the backbone's U-Net (its eager module: compiled or bf16 copies cannot learn) to fine-tune,
    with LoRA adapters of `lora_rank` on its attention projections if given (then only they learn; their
    random initialisation is drawn from `seed`). The copy carries none of the original's hooks; the active
    counter counts its calls as the U-Net's."""
    base = getattr(backbone.unet, "eager", backbone.unet)
    unet = copy.deepcopy(base)
    for m in unet.modules():  # a deep copy keeps hooks (the counter's among them): start clean
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    unet.requires_grad_(lora_rank is None)
    if lora_rank is not None:
        from peft import LoraConfig

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian",
                                        target_modules=list(LORA_TARGETS)))
    return counted_as_unet(unet)


def fine_tune(backbone, embeddings: torch.Tensor, targets: list[DenoisingTarget], steps: int, lr: float,
              seed: int = 0, lora_rank: int | None = None) -> tuple[object, list[list[float]]]:
    """A backbone whose U-Net is a copy fine-tuned by Adam for `steps` steps on the weighted sum of the
    targets' masked denoising losses under the frozen `embeddings` (one per target; Imagic §3.1 stage B;
    LayerDiffusion Eq. 4-6), fully or (with `lora_rank`) through LoRA. The VAE, text encoder and ControlNets
    are the backbone's own. Returns it with each step's loss terms; zero steps return `backbone` itself."""
    if steps <= 0:
        return backbone, []
    unet = unet_copy(backbone, lora_rank, seed)
    history = _optimise([p for p in unet.parameters() if p.requires_grad], unet, targets, embeddings.detach(), steps,
                        lr, backbone.scheduler_config, seed)
    unet.requires_grad_(False).eval()
    return dataclasses.replace(backbone, unet=unet, networks="eager"), history

"""The toon-64 family: architectures (as plain configs) and where its weights live.

The family is stored in the diffusers folder layout inside the package, fp16 safetensors:

    toon64/model_index.json            StableDiffusionPipeline index (vae, text_encoder, tokenizer, unet, scheduler)
    toon64/{vae,text_encoder,tokenizer,unet,scheduler}/
    toon64/clip/                       the whole CLIPModel (text + vision towers, joint space)
    toon64/controlnet-pose/, toon64/controlnet-scribble/
    toon64/evaluator/                  the attribute evaluator (judge of the benchmark)
"""

from __future__ import annotations

from pathlib import Path

TOON64_DIR = Path(__file__).resolve().parent / "toon64"

# SD 1.x noise schedule, so the family runs in the Stable Diffusion pipelines unchanged.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
)

TEXT_HIDDEN = 128
CLIP_TEXT_CONFIG = dict(hidden_size=TEXT_HIDDEN, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                        max_position_embeddings=77, projection_dim=128)
CLIP_VISION_CONFIG = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                          image_size=64, patch_size=8, projection_dim=128)

# One layer per block and two attention heads: less than half the CPU time of SD-like 8-head, 2-layer
# blocks (model card, U-Net section). diffusers' `attention_head_dim` is the number of heads here (its
# legacy naming).
UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(64, 128, 128),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=TEXT_HIDDEN, attention_head_dim=2, norm_num_groups=32,
)
# The image-space conditioning encoder must downsample 64 -> 16 (two stride-2 convs).
CONTROLNET_CONDITIONING_CHANNELS = (16, 32, 64)

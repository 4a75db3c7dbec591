"""The diffusion primitives every method shares (small functions over model, latents, schedule)."""

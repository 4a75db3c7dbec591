"""Training: the loop (`loop`), render and latent caches, and one recipe per part of the toon-64 family
(`vae`, `clip`, `unet`, `controlnet`, `evaluator`), with the train-all plan. It may use every layer
below the interfaces; nothing but the interfaces and a method's own training code imports it."""

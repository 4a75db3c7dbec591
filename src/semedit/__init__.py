"""semedit: feature-preserving semantic image editing with diffusion models."""

__version__ = "0.1.0"

from ._imports import defer_diffusers_package_inits

defer_diffusers_package_inits()

"""semedit: feature-preserving semantic image editing with diffusion models."""

__version__ = "0.1.0"

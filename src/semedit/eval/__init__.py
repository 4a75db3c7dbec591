"""Evaluation: metrics (and, later, the toon benchmark)."""

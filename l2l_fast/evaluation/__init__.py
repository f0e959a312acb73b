"""Evaluation as the paper does it: generation, metrics (FID, IS, CLIP-style, accuracy),
the report and its plots."""

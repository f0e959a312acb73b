"""The unlearning objective of DESIGN §1:

    L = mean_{x in R} d(E_θ(T(x)), E_0(T(x))) + α · mean_{x in F} d(E_θ(T(x)), E_0(T(n_x)))

The two means and α live in per-sample weights, so the loss is the plain sum
of the fused per-sample distances (and its backward needs no rescaling).
"""
from __future__ import annotations

import torch

from .ops import encoder_distance, encoder_distance_multi


def sample_weights(num_retain: int, num_forget: int, alpha: float, device) -> torch.Tensor:
    """[R + F] weights: 1/|R| for retain samples, α/|F| for forget samples."""
    return torch.cat([
        torch.full((num_retain,), 1.0 / num_retain, device=device),
        torch.full((num_forget,), alpha / num_forget, device=device),
    ])


def per_sample_distance(student, target, weight: torch.Tensor, distance: str) -> torch.Tensor:
    """Weighted d per sample [B]; a list of feature maps sums d over the maps."""
    if isinstance(student, (list, tuple)):
        return encoder_distance_multi(student, [t.detach() for t in target], weight, distance=distance)
    return encoder_distance(student, target.detach(), weight, distance=distance)

"""Teacher targets: one frozen-encoder pass on the mixed batch [T(x_R); T(n_F)]."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from .ops import gaussian_target


def frozen_teacher(encoder: nn.Module) -> nn.Module:
    """A copy of the encoder alone, in eval mode, without gradients."""
    teacher = copy.deepcopy(encoder).eval()
    teacher.requires_grad_(False)
    return teacher


def noise_images(
    forget: torch.Tensor,
    *,
    seed: int,
    offset: int,
    stats: str,
    clamp: Optional[tuple[float, float]],
    keep: Optional[torch.Tensor],
) -> torch.Tensor:
    """T(n_x) for a forget batch: Gaussian noise with the batch's statistics, corrupted."""
    return gaussian_target(forget, seed=seed, offset=offset, stats=stats, clamp=clamp, keep=keep)


@torch.no_grad()
def teacher_targets(adapter, teacher: nn.Module, retain, noise, corruption):
    """E_0 on [T(x_R); T(n_F)] in a single pass (inputs already prepared)."""
    return adapter.encode(teacher, adapter.concat(retain, noise), corruption)

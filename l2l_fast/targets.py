"""The teacher: a frozen copy of the original encoder (never of the whole model)."""
from __future__ import annotations

import copy

from torch import nn


def frozen_teacher(encoder: nn.Module) -> nn.Module:
    """A copy of the encoder alone, in eval mode, without gradients."""
    teacher = copy.deepcopy(encoder).eval()
    teacher.requires_grad_(False)
    return teacher

"""AdamW with the authors' settings and a warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math
from typing import Iterable

import torch

BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.05


def adamw(named_params: Iterable[tuple[str, torch.nn.Parameter]], lr: float,
          weight_decay: float = WEIGHT_DECAY, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on biases and norms (ndim <= 1).

    Fused by default, so that an update can be skipped on the device (`found_inf`)
    without a sync; `fused=False` takes torch's default implementation."""
    decay, no_decay = [], []
    for _, param in named_params:
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, fused=fused or None)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base lr at `step` (0-based): linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

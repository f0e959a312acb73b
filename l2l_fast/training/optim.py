"""AdamW with the authors' settings, an update that can be skipped on the device,
and a warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
from torch.optim.adamw import adamw as adamw_update

BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.05


class SkippableAdamW(torch.optim.AdamW):
    """Fused AdamW whose `step(skip=flag)` leaves the weights and the optimizer state
    unchanged where the 0-dim tensor `flag` is 1, decided on the device (the fused
    kernel's `found_inf`), so that a halted run needs no host synchronisation."""

    def __init__(self, params, lr: float, weight_decay: float):
        super().__init__(params, lr=lr, betas=BETAS, weight_decay=weight_decay, fused=True)

    @torch.no_grad()
    def step(self, closure=None, *, skip: Optional[torch.Tensor] = None):
        if closure is not None:
            raise ValueError("SkippableAdamW.step takes no closure")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for param in params:
                if not self.state[param]:
                    self.state[param] = {
                        "step": torch.zeros((), dtype=torch.float32, device=param.device),
                        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                    }
            if not params:
                continue
            states = [self.state[p] for p in params]
            beta1, beta2 = group["betas"]
            adamw_update(
                params, [p.grad for p in params], [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
                fused=True, found_inf=skip, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
            )


def param_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """The trainable parameters in two groups: weight decay on weights, none on biases and norms (ndim <= 1)."""
    decay, no_decay = [], []
    for _, param in named_params:
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(named_params: Iterable[tuple[str, torch.nn.Parameter]], lr: float,
          weight_decay: float = WEIGHT_DECAY) -> SkippableAdamW:
    """SkippableAdamW over `param_groups`, with the authors' betas."""
    return SkippableAdamW(param_groups(named_params, weight_decay), lr=lr, weight_decay=weight_decay)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base lr at `step` (0-based): linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

"""One optimisation step of `unlearn`, with no host synchronisation: the loss under
autocast, the guarded (and, for fp16, scaled) backward, gradient averaging and
clipping, and the fused AdamW update, skipped on the device once the run halts."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.utils.checkpoint

from . import distributed
from ..unlearning.objectives import StepInputs
from .monitor import StepMonitor


@dataclass
class TrainStep:
    step_loss: Callable[[StepInputs], tuple]  # inputs -> (loss, retain term, forget term)
    optimizer: torch.optim.Optimizer          # fused AdamW (see optim.adamw)
    scaler: torch.amp.GradScaler              # enabled for fp16
    trainable: list[torch.nn.Parameter]
    grad_clip: Optional[float]
    dtype: torch.dtype                        # autocast type; float32 runs without autocast
    ctx: distributed.Context = distributed.Context()
    average_gradients: bool = False           # all-reduce gradients here (modules not wrapped in DDP/FSDP)

    def __call__(self, monitor: StepMonitor, step: int, lr: float, inputs: StepInputs) -> None:
        device_type = inputs.retain.device.type
        with torch.autocast(device_type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            loss, retain_term, forget_term = self.step_loss(inputs)
        optimizer, scaler = self.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(monitor.guard(loss)).backward()
        if self.average_gradients:
            distributed.average_gradients(self.ctx, self.trainable)
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip or float("inf"))
        found_inf = monitor.record(step, lr, loss, retain_term, forget_term,
                                   None if scaler.is_enabled() else distributed.full(norm))
        if scaler.is_enabled():
            scaler.step(optimizer)  # skipped (and the scale lowered) on overflow, and once halted
            scaler.update()
        else:
            optimizer.found_inf = found_inf  # skips the fused update once halted, without a sync
            optimizer.step()
            del optimizer.found_inf


@contextlib.contextmanager
def checkpointed(blocks: list[torch.nn.Module]):
    """Recompute these modules' activations in the backward (torch.utils.checkpoint)."""
    for block in blocks:
        block.forward = functools.partial(torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward

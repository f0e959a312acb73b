"""One optimisation step with no host synchronisation: the loss under autocast, the
guarded (and, for fp16, scaled) backward, gradient averaging and clipping, and the
fused AdamW update, skipped on the device on a non-finite step."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper, checkpoint_wrapper

from . import distributed
from .monitor import StepMonitor
from .optim import SkippableAdamW


@dataclass
class TrainStep:
    step_loss: Callable[[Any], tuple]         # inputs -> (loss, retain term, forget term)
    optimizer: SkippableAdamW
    scaler: torch.amp.GradScaler              # enabled for fp16
    trainable: list[torch.nn.Parameter]
    grad_clip: Optional[float]
    dtype: torch.dtype                        # autocast type; float32 runs without autocast
    device_type: str
    ctx: distributed.Context = distributed.Context()
    average_gradients: bool = False           # all-reduce gradients here (modules not wrapped in DDP/FSDP)

    def __call__(self, monitor: StepMonitor, step: int, lr: float, inputs) -> None:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            loss, retain_term, forget_term = self.step_loss(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(monitor.guard(loss)).backward()
        if self.average_gradients:
            distributed.average_gradients(self.ctx, self.trainable)
        self.scaler.unscale_(self.optimizer)
        norm = distributed.full(torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip or float("inf")))
        scaled = self.scaler.is_enabled()
        halted = monitor.record(step, lr, loss, retain_term, forget_term, None if scaled else norm)
        # fp16: a gradient overflow skips this step only, and the scaler lowers its scale.
        skip = torch.maximum(halted, (~torch.isfinite(norm)).float()) if scaled else halted
        self.optimizer.step(skip=skip)
        self.scaler.update()


@contextlib.contextmanager
def checkpointed(root: torch.nn.Module, blocks: list[torch.nn.Module]):
    """Recompute the activations of these blocks of `root` in the backward: each is
    wrapped in a CheckpointWrapper inside its container (state-dict keys unchanged)
    for the duration, and put back afterwards."""
    chosen = {id(block) for block in blocks}
    containers = [m for m in root.modules() if isinstance(m, torch.nn.ModuleList)]
    wrapped = []
    for container in containers:
        for index, block in enumerate(container):
            if id(block) in chosen:
                container[index] = checkpoint_wrapper(block)
                wrapped.append((container, index, block))
    try:
        yield
    finally:
        for container, index, block in wrapped:
            if isinstance(container[index], CheckpointWrapper):
                container[index] = block

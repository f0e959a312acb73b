"""The step records and the non-finite guard of `unlearn`, kept on the device and
read every `log_every` steps, so that no step waits for the GPU.

A non-finite loss (or, without a gradient scaler, a non-finite gradient) halts the
run on the device: from that step on the loss is multiplied by NaN before the
backward and the optimizer step is skipped on the device (SkippableAdamW's
`skip`), so the weights stay
those of the last finite step until the next read raises NonFiniteLossError
naming the step.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from . import distributed


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient stopped being finite; the model keeps its last finite step."""


class StepMonitor:
    def __init__(self, ctx: distributed.Context, device: torch.device, log_every: int):
        self.ctx, self.log_every = ctx, log_every
        self.halted = torch.zeros((), dtype=torch.bool, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.float64, device=device)
        self.pending: list[tuple[int, float, torch.Tensor]] = []

    def guard(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to differentiate: NaN, so that every gradient is NaN, once halted."""
        bad = self.halted | ~torch.isfinite(loss.detach())
        return loss * torch.where(bad, float("nan"), 1.0)

    def record(self, step: int, lr: float, loss, retain, forget, grad_norm: Optional[torch.Tensor]) -> torch.Tensor:
        """Keep this step's values; returns the halt flag (1.0 once halted), the optimizer's `skip`."""
        bad = ~torch.isfinite(loss.detach())
        if grad_norm is not None:
            bad = bad | ~torch.isfinite(grad_norm)
        self.first_bad = torch.where(bad & ~self.halted, float(step), self.first_bad)
        self.halted = self.halted | bad
        self.pending.append((step, lr, torch.stack([loss.detach(), retain, forget]).double()))
        return self.halted.float()

    def due(self, step: int) -> bool:
        return (step + 1) % self.log_every == 0

    def read(self, deliver: Callable[[dict], None]) -> None:
        """Pass each pending record (averaged over ranks) to `deliver`, in step order;
        NonFiniteLossError, after the records before it, if the run halted."""
        if not self.pending:
            return
        steps = [step for step, _, _ in self.pending]
        packed = torch.cat([torch.stack([v for _, _, v in self.pending]).flatten(), self.first_bad[None]])
        per_rank = torch.stack(distributed.gather_states(self.ctx, packed)).cpu()
        values = per_rank[:, :-1].view(per_rank.shape[0], len(steps), 3)
        halted_at = [int(f) for f in per_rank[:, -1].tolist() if f >= 0]
        mean = values.mean(0).tolist()
        pending, self.pending = self.pending, []
        for i, (step, lr, _) in enumerate(pending):
            if halted_at and step >= min(halted_at):
                raise _error(step, mean[i][0], values[:, i, 0].tolist(), self.ctx.enabled)
            deliver({"step": step, "loss": mean[i][0], "retain": mean[i][1], "forget": mean[i][2], "lr": lr})


def _error(step: int, loss: float, rank_losses: list[float], name_ranks: bool) -> NonFiniteLossError:
    keeps = f"the model keeps its weights from step {step - 1}"
    bad_ranks = [rank for rank, value in enumerate(rank_losses) if not math.isfinite(value)]
    if not bad_ranks:
        return NonFiniteLossError(f"non-finite gradient at step {step}; {keeps}")
    where = f" on rank {', '.join(map(str, bad_ranks))}" if name_ranks else ""
    return NonFiniteLossError(f"non-finite loss ({loss}) at step {step}{where}; {keeps}")

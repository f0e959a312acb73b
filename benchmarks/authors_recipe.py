"""A faithful re-creation of the authors' unlearning step, to measure against.

What their code does per step, kept here on purpose (DESIGN §1 lists it):
- the teacher runs in fp32 on the full real batch, then again on a full noise
  batch (noise drawn for every sample, forget or not);
- noise and loss are separate eager operations;
- the VQ tokenizer runs in every pass (student input, teacher real, teacher noise);
- the loss is read on the host every step (AuthorsTrainStep).
It computes the same loss as `l2l_fast.unlearning.objectives.ours` (clean per-subset
means, the same seeded noise), so the two can be compared on one batch.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from l2l_fast.ops import reference
from l2l_fast.unlearning.step_data import StepInputs


def _maps(embedding):
    return embedding if isinstance(embedding, (list, tuple)) else [embedding]


def authors_step(s: StepInputs, encoder, teacher, autocast_dtype=None):
    """(loss, retain term, forget term) computed as the authors' code does."""
    adapter = s.adapter
    images = torch.cat([s.retain, s.forget])
    count = images.shape[0]
    autocast = (torch.autocast(images.device.type, dtype=autocast_dtype) if autocast_dtype
                else contextlib.nullcontext())
    with autocast:
        student = _maps(adapter.encode(encoder, adapter.prepare(images), s.corruption))
    with torch.no_grad():
        teacher_real = _maps(adapter.encode(teacher, adapter.prepare(images), s.corruption))
        keep = adapter.noise_keep(s.corruption)
        # noise for every sample, with the forget batch's statistics, the forget rows
        # carrying exactly the stream the lean step draws
        forget_noise = reference.gaussian_target(
            s.forget, seed=s.noise_seed, offset=s.noise_offset, stats=s.noise_stats, clamp=s.noise_clamp,
            keep=None if keep is None else keep[s.num_retain:].to(images.dtype))
        retain_noise = reference.gaussian_target(
            s.retain, seed=s.noise_seed + 1, offset=s.noise_offset, stats=s.noise_stats, clamp=s.noise_clamp)
        noise = torch.cat([retain_noise, adapter.noise_input(s.forget, forget_noise, s.part("forget"))])
        teacher_noise = _maps(adapter.encode(teacher, adapter.prepare(noise), s.corruption))
    is_forget = torch.arange(count, device=images.device) >= s.num_retain
    total = torch.zeros(count, device=images.device)
    for st, real, fake in zip(student, teacher_real, teacher_noise):
        target = torch.where(is_forget.view(-1, *[1] * (real.dim() - 1)), fake, real)
        diff = (st.float() - target.float()).reshape(count, -1)
        total = total + (diff.square().mean(1) if s.distance == "mse" else diff.square().sum(1).sqrt())
    retain, forget = total[~is_forget].mean(), total[is_forget].mean()
    return retain + s.alpha * forget, retain.detach(), forget.detach()


@dataclass
class AuthorsTrainStep:
    """Their update around `authors_step`, as in MAE's training engine: the loss read on
    the host every step (logging and a finiteness check), the scaled backward, clipping
    and torch's default AdamW; the teacher stays fp32 whatever the student's autocast."""

    encoder: torch.nn.Module
    teacher: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    trainable: list
    grad_clip: float
    dtype: torch.dtype

    def __call__(self, inputs: StepInputs) -> float:
        loss, _, _ = authors_step(inputs, self.encoder, self.teacher,
                                  autocast_dtype=None if self.dtype == torch.float32 else self.dtype)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value}, stopping training")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

"""A re-creation of the authors' unlearning step, written from their code, to measure against.

MAE and MAGE follow `engine_unlearn.train_one_epoch` of jpmorganchase/i2i_mage (their MAE
variant is not published; it is the same engine around a different model):
- the student runs under autocast, the teacher in fp32, twice on the full batch: on the
  real images, then on a noise batch drawn for every sample, forget or not;
- the noise is `clamp(torch.randn_like(x) * x.std() + x.mean(), 0, 1)` with the mean and
  unbiased std of the whole mixed batch x (retain and forget), in the model's [0, 1] input;
- the VQ tokenizer runs in every pass (student input, teacher real, teacher noise);
- the loss is read on the host every step, before the backward (their finiteness check),
  and the two terms after it; torch's default AdamW, a gradient scaler, clipping.
Palette follows `Network.forward(fix_decoder=True)` of jpmorganchase/i2i_Palette (their
q_sample with labels): one fp32 teacher pass on the full batch whose y_t is, inside the hole
of the forget rows, pure ε (the √γ·y₀ term dropped); the student sees the ordinary y_t;
torch's default Adam, no clipping, the loss read after the update.

The optimizers are built as torch builds its default on the authors' target device, a CUDA
GPU: the multi-tensor `foreach` implementation (`OPTIMIZER_IMPL`). On a CPU torch's default
is the single-tensor Python loop, a CPU-only slow path that would flatter the lean step
(fused AdamW) on every CPU ratio.

Left out on purpose: their EMA of the whole network after every Palette update (no part of
the unlearning; it would only slow the baseline) and their per-sample weights (1 ± label),
which average each term over the whole batch: here each term is a clean per-subset mean, as
in `l2l_fast.unlearning.objectives.ours` (equivalent up to lr and α). PyTorch's default
matmul precision is left as it is (the results record whether TF32 was on).

`noise="project"` draws the project's noise instead (the reference Philox stream, the lean
step's Palette target): the loss then equals the lean step's on one batch, which is what the
tests compare. No benchmark uses it: it runs the slow reference operator on purpose.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch

from l2l_fast.adapters.diffusion import DiffusionAdapter
from l2l_fast.ops import reference
from l2l_fast.training.optim import BETAS, WEIGHT_DECAY, param_groups
from l2l_fast.unlearning.step_data import StepInputs

NOISE = ("authors", "project")
# torch.optim's default on CUDA tensors (_default_to_fused_or_foreach -> foreach=True, fused=False)
OPTIMIZER_IMPL = "foreach"


def _maps(embedding):
    return embedding if isinstance(embedding, (list, tuple)) else [embedding]


def authors_noise(images: torch.Tensor) -> torch.Tensor:
    """Their noise batch: N(mean, std) of the whole batch, clamped to the [0, 1] input range."""
    return torch.clamp(torch.randn_like(images) * torch.std(images) + torch.mean(images), 0.0, 1.0)


def _project_noise(s: StepInputs, images: torch.Tensor) -> torch.Tensor:
    """The lean step's noise for the forget rows (the reference stream), another stream for the retain rows."""
    adapter = s.adapter
    keep = adapter.noise_keep(s.corruption)
    forget_noise = reference.gaussian_target(
        s.forget, seed=s.noise_seed, offset=s.noise_offset, stats=s.noise_stats, clamp=s.noise_clamp,
        keep=None if keep is None else keep[s.num_retain:].to(images.dtype))
    retain_noise = reference.gaussian_target(
        s.retain, seed=s.noise_seed + 1, offset=s.noise_offset, stats=s.noise_stats, clamp=s.noise_clamp)
    return torch.cat([retain_noise, adapter.noise_input(s.forget, forget_noise, s.part("forget"))])


def _terms(s: StepInputs, student, teacher_real, teacher_noise, count: int, device):
    """(loss, retain term, forget term): retain rows towards teacher_real, forget rows towards teacher_noise."""
    is_forget = torch.arange(count, device=device) >= s.num_retain
    total = torch.zeros(count, device=device)
    for st, real, fake in zip(student, teacher_real, teacher_noise):
        target = torch.where(is_forget.view(-1, *[1] * (real.dim() - 1)), fake, real)
        diff = (st.float() - target.float()).reshape(count, -1)
        total = total + (diff.square().mean(1) if s.distance == "mse" else diff.square().sum(1).sqrt())
    retain, forget = total[~is_forget].mean(), total[is_forget].mean()
    return retain + s.alpha * forget, retain.detach(), forget.detach()


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def authors_step(s: StepInputs, encoder, teacher, autocast_dtype=None, *, noise: str = "authors"):
    """(loss, retain term, forget term) computed as the authors' code does."""
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    if noise == "authors" and isinstance(s.adapter, DiffusionAdapter):
        return _palette_step(s, encoder, teacher, autocast_dtype)
    adapter = s.adapter
    images = torch.cat([s.retain, s.forget])
    with _autocast(images.device, autocast_dtype):
        student = _maps(adapter.encode(encoder, adapter.prepare(images), s.corruption))
    with torch.no_grad():
        teacher_real = _maps(adapter.encode(teacher, adapter.prepare(images), s.corruption))
        noise_images = authors_noise(images) if noise == "authors" else _project_noise(s, images)
        target_corruption = adapter.target_corruption(s.corruption, s.num_retain, s.diffusion_target)
        teacher_noise = _maps(adapter.encode(teacher, adapter.prepare(noise_images), target_corruption))
    return _terms(s, student, teacher_real, teacher_noise, images.shape[0], images.device)


def palette_teacher_input(s: StepInputs, student_input: torch.Tensor) -> torch.Tensor:
    """concat(y_cond, y_t) of their teacher: the student's, with y_t = ε inside the hole of the forget rows."""
    c = s.corruption.to(student_input.device)
    channels = student_input.shape[1] // 2
    rows = torch.arange(student_input.shape[0], device=student_input.device) >= s.num_retain
    forget_hole = rows.view(-1, 1, 1, 1) & ~c.pixel.bool()
    y_t = torch.where(forget_hole, c.noise.to(student_input.dtype), student_input[:, channels:])
    return torch.cat([student_input[:, :channels], y_t], dim=1)


def _palette_step(s: StepInputs, encoder, teacher, autocast_dtype):
    images = torch.cat([s.retain, s.forget])
    gamma = s.corruption.gamma.to(images.device)
    student_input = s.adapter.unet_input(images, s.corruption)
    with _autocast(images.device, autocast_dtype):
        student, _ = encoder(student_input, gamma)
    with torch.no_grad():
        target, _ = teacher(palette_teacher_input(s, student_input), gamma)
    return _terms(s, student, target, target, images.shape[0], images.device)


@dataclass
class AuthorsTrainStep:
    """Their update around `authors_step`: MAE/MAGE as in MAE's training engine (the loss
    read before the backward, the scaled backward, clipping, AdamW, the terms read after);
    Palette as its trainer (backward, Adam, the loss read after). The teacher stays fp32
    whatever the student's autocast."""

    encoder: torch.nn.Module
    teacher: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    trainable: list
    grad_clip: Optional[float]
    dtype: torch.dtype

    def __call__(self, inputs: StepInputs) -> float:
        loss, retain, forget = authors_step(inputs, self.encoder, self.teacher,
                                            autocast_dtype=None if self.dtype == torch.float32 else self.dtype)
        self.optimizer.zero_grad(set_to_none=True)
        if isinstance(inputs.adapter, DiffusionAdapter):
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return loss.item()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value}, stopping training")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.terms = (retain.item(), forget.item())
        return value


def authors_train_step(adapter, encoder: torch.nn.Module, teacher: torch.nn.Module, dtype: torch.dtype,
                       lr: float, grad_clip: float) -> AuthorsTrainStep:
    """Their optimizer for the family: Palette torch's default Adam (no weight decay, no clipping),
    MAE/MAGE torch's default AdamW with no decay on biases and norms, betas (0.9, 0.95); both
    in the implementation torch picks by default on CUDA (OPTIMIZER_IMPL), whatever the device."""
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    device = next(encoder.parameters()).device
    if isinstance(adapter, DiffusionAdapter):
        optimizer, clip = torch.optim.Adam(trainable, lr=lr, foreach=True), None
    else:
        optimizer = torch.optim.AdamW(param_groups(encoder.named_parameters(), WEIGHT_DECAY), lr=lr, betas=BETAS,
                                      foreach=True)
        clip = grad_clip
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return AuthorsTrainStep(encoder, teacher, optimizer, scaler, trainable, clip, dtype)

"""encoder_distance: the per-sample encoder-space loss (DESIGN §2).

The compiled backends compute the loss and d loss / d student in one pass when
the student needs a gradient; the backward then only scales that gradient by
grad_output (and skips even that when grad_output is all ones, as when the
per-sample weights already hold the reduction and the caller sums).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import reference
from .._extension import HAS_C, triton_kernels
from ._backend import resolve
from ._checks import DISTANCES, check_choice, check_pair, check_weight

OP = "encoder_distance"
_OP_NAMES = {
    "cpu": ("encoder_distance", "encoder_distance_multi", "scale_rows"),
    "cuda": ("encoder_distance", "encoder_distance_multi", "scale_rows"),
    "triton": ("encoder_distance_triton", "encoder_distance_multi_triton", "scale_rows_triton"),
}


def _op(backend: str, which: int):
    return getattr(torch.ops.l2l_fast, _OP_NAMES[backend][which])


def _needs_grad(student: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and student.requires_grad


def encoder_distance(
    student: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    *,
    distance: str = "mse",
    backend: str = "auto",
) -> torch.Tensor:
    """out[b] = weight[b] * d(student[b], target[b]), fp32 [B].

    d is the mean squared difference ("mse") or the Euclidean norm ("l2") over
    all elements of a sample. Differentiable in `student` only.
    """
    check_pair(student, target, OP)
    check_weight(weight, student.shape[0], student.device, OP)
    check_choice(distance, "distance", DISTANCES, OP)
    chosen = resolve(backend, student.device)
    if chosen == "reference":
        return reference.encoder_distance(student, target, weight, distance=distance)
    out, _ = _op(chosen, 0)(student, target, weight, distance, _needs_grad(student))
    return out


def encoder_distance_multi(
    students: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    *,
    distance: str = "mse",
    backend: str = "auto",
) -> torch.Tensor:
    """Sum over feature maps of encoder_distance, per sample, in one launch."""
    students, targets = list(students), list(targets)
    if not students or len(students) != len(targets):
        raise ValueError(
            f"{OP}: students and targets must be non-empty lists of equal length, "
            f"got {len(students)} and {len(targets)}"
        )
    for index, (student, target) in enumerate(zip(students, targets)):
        check_pair(student, target, OP, suffix=f"[{index}]")
        if student.shape[0] != students[0].shape[0] or student.dtype != students[0].dtype:
            raise ValueError(
                f"{OP}: students[{index}] must share students[0]'s batch size and dtype "
                f"({students[0].shape[0]}, {students[0].dtype}), got ({student.shape[0]}, {student.dtype})"
            )
        if student.device != students[0].device:
            raise ValueError(f"{OP}: students[{index}] is on {student.device}, students[0] on {students[0].device}")
    check_weight(weight, students[0].shape[0], students[0].device, OP)
    check_choice(distance, "distance", DISTANCES, OP)
    chosen = resolve(backend, students[0].device)
    if chosen == "reference":
        return reference.encoder_distance_multi(students, targets, weight, distance=distance)
    needs_grad = torch.is_grad_enabled() and any(s.requires_grad for s in students)
    out, _ = _op(chosen, 1)(students, targets, weight, distance, needs_grad)
    return out


def _all_ones(grad_output: torch.Tensor) -> bool:
    """True when grad_output is all ones, checked only on real CPU data: never while
    tracing, and never on an accelerator, where reading the answer would synchronise."""
    tracing = torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0
    if tracing or type(grad_output) is not torch.Tensor or grad_output.device.type != "cpu":
        return False
    return bool(torch.all(grad_output == 1))


def _scale(backend: str, grad_unit: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    if grad_unit.numel() == 0:
        raise RuntimeError(f"{OP}: backward through a call made with compute_grad=False")
    if _all_ones(grad_output):
        return grad_unit
    return _op(backend, 2)(grad_unit, grad_output.float().contiguous())


def _register(backend: str) -> None:
    single, multi, scale = (f"l2l_fast::{name}" for name in _OP_NAMES[backend])

    def setup_single(ctx, inputs, output):
        ctx.save_for_backward(output[1])

    def backward_single(ctx, grad_out, _grad_of_grad):
        (grad_unit,) = ctx.saved_tensors
        return _scale(backend, grad_unit, grad_out), None, None, None, None

    def setup_multi(ctx, inputs, output):
        ctx.save_for_backward(*output[1])

    def backward_multi(ctx, grad_out, _grads_of_grads):
        grads = [_scale(backend, g, grad_out) for g in ctx.saved_tensors]
        return grads, [None] * len(grads), None, None, None

    torch.library.register_autograd(single, backward_single, setup_context=setup_single)
    torch.library.register_autograd(multi, backward_multi, setup_context=setup_multi)
    if backend == "triton":
        return  # triton_op traces its own kernels; no fake kernel to register

    @torch.library.register_fake(single)
    def _(student, target, weight, distance, compute_grad):
        out = student.new_empty(student.shape[0], dtype=torch.float32)
        grad = torch.empty_like(student, memory_format=torch.contiguous_format) if compute_grad else student.new_empty(0)
        return out, grad

    @torch.library.register_fake(multi)
    def _(students, targets, weight, distance, compute_grad):
        out = students[0].new_empty(students[0].shape[0], dtype=torch.float32)
        grads = [
            torch.empty_like(s, memory_format=torch.contiguous_format) if compute_grad else s.new_empty(0)
            for s in students
        ]
        return out, grads

    @torch.library.register_fake(scale)
    def _(grad_unit, grad_output):
        return torch.empty_like(grad_unit, memory_format=torch.contiguous_format)


if HAS_C:
    _register("cpu")
if triton_kernels is not None:
    _register("triton")

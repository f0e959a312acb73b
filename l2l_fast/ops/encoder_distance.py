"""encoder_distance: the per-sample encoder-space loss (DESIGN §2).

The compiled backends compute the loss and d loss / d student in one pass when
the student needs a gradient; the backward then only scales that gradient by
grad_output (and skips even that when grad_output is the expanded 1 of out.sum(),
as when the per-sample weights already hold the reduction and the caller sums).

Eager calls that need a gradient go through one small autograd.Function that
calls the op below autograd; the autograd registered on the op itself
(torch.library.register_autograd) serves torch.compile and direct callers of
torch.ops.l2l_fast; its generic Python path adds about half the time of the whole
eager loss per call at small sizes. Both use the same backward.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch

from . import reference
from .._extension import HAS_C, triton_kernels
from ._backend import resolve
from ._checks import DISTANCES, check_choice, check_pair, check_weight

OP = "encoder_distance"


class _Ops(NamedTuple):
    single: Callable
    multi: Callable
    scale: Callable


_OPS: dict[str, _Ops] = {}  # backend -> its registered ops (OpOverloads)


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
    device = student.device
    check_pair(student, target, OP)
    check_weight(weight, student.shape[0], device, OP)
    check_choice(distance, "distance", DISTANCES, OP)
    chosen = resolve(backend, device)
    if chosen == "reference":
        return reference.encoder_distance(student, target, weight, distance=distance)
    ops = _OPS[chosen]
    needs_grad = torch.is_grad_enabled() and student.requires_grad
    if needs_grad and not torch.compiler.is_compiling():
        return _Distance.apply(ops, student, target, weight, distance)
    return ops.single(student, target, weight, distance, needs_grad)[0]


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
    device = students[0].device
    check_weight(weight, students[0].shape[0], device, OP)
    check_choice(distance, "distance", DISTANCES, OP)
    chosen = resolve(backend, device)
    if chosen == "reference":
        return reference.encoder_distance_multi(students, targets, weight, distance=distance)
    ops = _OPS[chosen]
    needs_grad = torch.is_grad_enabled() and any(s.requires_grad for s in students)
    if needs_grad and not torch.compiler.is_compiling():
        return _MultiDistance.apply(ops, weight, distance, len(students), *students, *targets)
    return ops.multi(students, targets, weight, distance, needs_grad)[0]


def _is_one(grad_out: torch.Tensor) -> bool:
    """True when every grad_out[b] is exactly 1, as out.sum() passes it: one value
    expanded (stride 0). Read only on real CPU data: never while tracing, and never
    on an accelerator, where reading it would synchronise."""
    return (
        grad_out.stride(0) == 0
        and grad_out.is_cpu
        and type(grad_out) is torch.Tensor
        and not torch.compiler.is_compiling()
        and torch._C._len_torch_dispatch_stack() == 0
        and grad_out.tolist()[0] == 1.0  # the cheapest read of one element
    )


def _scale(ops: _Ops, grad_unit: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    if grad_unit.numel() == 0:
        raise RuntimeError(f"{OP}: backward through a call made with compute_grad=False")
    return grad_unit if _is_one(grad_out) else ops.scale(grad_unit, grad_out)


class _Distance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, student, target, weight, distance):
        with torch._C._AutoDispatchBelowAutograd():
            out, grad_unit = ops.single(student, target, weight, distance, True)
        ctx.ops = ops
        ctx.save_for_backward(grad_unit)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (grad_unit,) = ctx.saved_tensors
        return None, _scale(ctx.ops, grad_unit, grad_out), None, None, None


class _MultiDistance(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, weight, distance, count, *maps):  # maps: students, then targets
        with torch._C._AutoDispatchBelowAutograd():
            out, grad_units = ops.multi(list(maps[:count]), list(maps[count:]), weight, distance, True)
        ctx.ops = ops
        ctx.save_for_backward(*grad_units)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grads = [_scale(ctx.ops, g, grad_out) for g in ctx.saved_tensors]
        return None, None, None, None, *grads, *[None] * len(grads)


def _register(names: tuple[str, str, str], with_fake: bool) -> _Ops:
    """register_autograd (and the fake kernels) for the ops called `names`."""
    single, multi, scale = (f"l2l_fast::{name}" for name in names)
    ops = _Ops(*(getattr(torch.ops.l2l_fast, name).default for name in names))

    def setup_single(ctx, inputs, output):
        ctx.save_for_backward(output[1])

    def backward_single(ctx, grad_out, _grad_of_grad):
        (grad_unit,) = ctx.saved_tensors
        return _scale(ops, grad_unit, grad_out), None, None, None, None

    def setup_multi(ctx, inputs, output):
        ctx.save_for_backward(*output[1])

    def backward_multi(ctx, grad_out, _grads_of_grads):
        grads = [_scale(ops, g, grad_out) for g in ctx.saved_tensors]
        return grads, [None] * len(grads), None, None, None

    torch.library.register_autograd(single, backward_single, setup_context=setup_single)
    torch.library.register_autograd(multi, backward_multi, setup_context=setup_multi)
    if not with_fake:
        return ops

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

    return ops


if HAS_C:  # one C++ op per name; the dispatcher picks its CPU or CUDA kernel by device
    _OPS["cpu"] = _OPS["cuda"] = _register(("encoder_distance", "encoder_distance_multi", "scale_rows"), True)
if triton_kernels is not None:  # the kernels module registers the fake kernels of its ops
    _OPS["triton"] = _register(
        ("encoder_distance_triton", "encoder_distance_multi_triton", "scale_rows_triton"), False
    )

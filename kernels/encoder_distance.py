"""encoder_distance, its list form over several feature maps, and scale_rows.

out[b] = w[b] * mean_j (s - t)^2 ("mse") or w[b] * ||s - t||_2 ("l2"), fp32 accumulation.
With compute_grad the same kernel writes d out[b] / d s[b] in the student's dtype.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import triton
import triton.language as tl

MAX_BLOCK_SIZE = 4096
# Feature maps handled by one launch of the list form; more maps take more launches.
MAX_MAPS_PER_LAUNCH = 8


@triton.jit
def _row_distance(
    s_ptr,
    t_ptr,
    g_ptr,
    row,
    n_cols,
    w,
    DISTANCE_L2: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    # s, t, g: [B, n_cols]; returns w * d(s[row], t[row]) and writes g[row].
    base = row * n_cols
    s_row = s_ptr + base
    t_row = t_ptr + base
    cols = tl.arange(0, BLOCK_SIZE)
    grad_scale = w * 2.0 / n_cols
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK_SIZE):
        offs = start + cols
        mask = offs < n_cols
        s = tl.load(s_row + offs, mask=mask, other=0.0).to(tl.float32)
        t = tl.load(t_row + offs, mask=mask, other=0.0).to(tl.float32)
        d = s - t
        acc += d * d
        if COMPUTE_GRAD and not DISTANCE_L2:
            tl.store(g_ptr + base + offs, (d * grad_scale).to(g_ptr.dtype.element_ty), mask=mask)
    sum_sq = tl.sum(acc, axis=0)
    if DISTANCE_L2:
        dist = tl.sqrt(sum_sq)
        if COMPUTE_GRAD:
            inv = tl.where(dist > 0.0, w / tl.where(dist > 0.0, dist, 1.0), 0.0)
            for start in range(0, n_cols, BLOCK_SIZE):
                offs = start + cols
                mask = offs < n_cols
                s = tl.load(s_row + offs, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_row + offs, mask=mask, other=0.0).to(tl.float32)
                tl.store(g_ptr + base + offs, ((s - t) * inv).to(g_ptr.dtype.element_ty), mask=mask)
    else:
        dist = sum_sq / n_cols
    return dist * w


@triton.jit
def _encoder_distance_forward_kernel(
    s_ptr,  # [B, N]
    t_ptr,  # [B, N]
    w_ptr,  # [B] or unused
    out_ptr,  # [B] fp32
    g_ptr,  # [B, N] or unused
    n_cols,
    HAS_WEIGHT: tl.constexpr,
    DISTANCE_L2: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(w_ptr + row).to(tl.float32)
    dist = _row_distance(s_ptr, t_ptr, g_ptr, row, n_cols, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    tl.store(out_ptr + row, dist)


@triton.jit
def _encoder_distance_multi_forward_kernel(
    # map k: s_k, t_k, g_k [B, n_k]; slots k >= NUM_MAPS are None
    s0, t0, g0, n0,
    s1, t1, g1, n1,
    s2, t2, g2, n2,
    s3, t3, g3, n3,
    s4, t4, g4, n4,
    s5, t5, g5, n5,
    s6, t6, g6, n6,
    s7, t7, g7, n7,
    w_ptr,  # [B] or unused
    out_ptr,  # [B] fp32
    NUM_MAPS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    DISTANCE_L2: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    w = 1.0
    if HAS_WEIGHT:
        w = tl.load(w_ptr + row).to(tl.float32)
    # Maps are added in list order, as the reference sums them.
    total = 0.0
    if ACCUMULATE:
        total = tl.load(out_ptr + row)
    total += _row_distance(s0, t0, g0, row, n0, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 1:
        total += _row_distance(s1, t1, g1, row, n1, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 2:
        total += _row_distance(s2, t2, g2, row, n2, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 3:
        total += _row_distance(s3, t3, g3, row, n3, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 4:
        total += _row_distance(s4, t4, g4, row, n4, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 5:
        total += _row_distance(s5, t5, g5, row, n5, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 6:
        total += _row_distance(s6, t6, g6, row, n6, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    if NUM_MAPS > 7:
        total += _row_distance(s7, t7, g7, row, n7, w, DISTANCE_L2, COMPUTE_GRAD, BLOCK_SIZE)
    tl.store(out_ptr + row, total)


@triton.jit
def _scale_rows_kernel(
    x_ptr,  # [B, N]
    scale_ptr,  # [B], element b at b * scale_stride
    out_ptr,  # [B, N]
    n_cols,
    blocks_per_row,
    scale_stride,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    row = pid // blocks_per_row
    offs = (pid % blocks_per_row) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_cols
    scale = tl.load(scale_ptr + row * scale_stride).to(tl.float32)
    x = tl.load(x_ptr + row * n_cols + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * n_cols + offs, (x * scale).to(out_ptr.dtype.element_ty), mask=mask)


def block_size_for(n: int, max_block: int = MAX_BLOCK_SIZE) -> int:
    return max(16, min(triton.next_power_of_2(max(n, 1)), max_block))


def num_warps_for(block_size: int) -> int:
    if block_size >= 4096:
        return 8
    if block_size >= 1024:
        return 4
    return 2


KERNEL_IS_INTERPRETED = not isinstance(_encoder_distance_forward_kernel, triton.runtime.JITFunction)


def register_triton_op(name: str, fake: Callable) -> Callable:
    """Registers the launcher as torch.ops.l2l_fast.<name>.

    Compiled Triton: a triton_op, so torch.compile traces into the kernels. The
    interpreter (TRITON_INTERPRET=1) runs kernels eagerly even on fake tensors,
    which triton_op cannot trace, so there the op is an opaque custom_op with `fake`.
    """
    qualname = f"l2l_fast::{name}"

    def decorate(fn: Callable) -> Callable:
        if hasattr(torch.ops.l2l_fast, name):
            return fn
        if KERNEL_IS_INTERPRETED:
            op = torch.library.custom_op(qualname, fn, mutates_args=())
            op.register_fake(fake)
        else:
            torch.library.triton_op(qualname, fn, mutates_args=())
        return fn

    return decorate


def _fake_encoder_distance(student, target, weight, distance, compute_grad):
    out = student.new_empty(student.shape[0], dtype=torch.float32)
    grad = torch.empty_like(student, memory_format=torch.contiguous_format)
    return out, grad if compute_grad else student.new_empty(0)


@register_triton_op("encoder_distance_triton", _fake_encoder_distance)
def encoder_distance_forward(
    student: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor],
    distance: str,
    compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [B] fp32, grad like student or empty); see the module docstring."""
    student = student.contiguous()
    target = target.contiguous()
    rows = student.shape[0]
    n_cols = student.numel() // rows if rows else 0
    out = student.new_empty(rows, dtype=torch.float32)
    grad = torch.empty_like(student) if compute_grad else student.new_empty(0)
    if rows == 0:
        return out, grad
    weight = weight.contiguous() if weight is not None else None
    block = block_size_for(n_cols)
    torch.library.wrap_triton(_encoder_distance_forward_kernel)[(rows,)](
        student,
        target,
        weight,
        out,
        grad if compute_grad else None,
        n_cols,
        HAS_WEIGHT=weight is not None,
        DISTANCE_L2=distance == "l2",
        COMPUTE_GRAD=compute_grad,
        BLOCK_SIZE=block,
        num_warps=num_warps_for(block),
    )
    return out, grad


def _fake_encoder_distance_multi(students, targets, weight, distance, compute_grad):
    out = students[0].new_empty(students[0].shape[0], dtype=torch.float32)
    if compute_grad:
        grads = [torch.empty_like(s, memory_format=torch.contiguous_format) for s in students]
    else:
        grads = [s.new_empty(0) for s in students]
    return out, grads


@register_triton_op("encoder_distance_multi_triton", _fake_encoder_distance_multi)
def encoder_distance_multi_forward(
    students: list[torch.Tensor],
    targets: list[torch.Tensor],
    weight: Optional[torch.Tensor],
    distance: str,
    compute_grad: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(out [B] fp32 summed over maps, per-map grads or per-map empty tensors).

    One launch per MAX_MAPS_PER_LAUNCH maps; one program per row walks its maps in order.
    """
    students = [s.contiguous() for s in students]
    targets = [t.contiguous() for t in targets]
    rows = students[0].shape[0]
    out = students[0].new_empty(rows, dtype=torch.float32)
    if compute_grad:
        grads = [torch.empty_like(s) for s in students]
    else:
        grads = [s.new_empty(0) for s in students]
    if rows == 0:
        return out, grads
    weight = weight.contiguous() if weight is not None else None
    n_cols = [s.numel() // rows for s in students]
    for first in range(0, len(students), MAX_MAPS_PER_LAUNCH):
        maps = range(first, min(first + MAX_MAPS_PER_LAUNCH, len(students)))
        slots: list = []
        for m in maps:
            slots += [students[m], targets[m], grads[m] if compute_grad else None, n_cols[m]]
        slots += [None, None, None, 0] * (MAX_MAPS_PER_LAUNCH - len(maps))
        block = block_size_for(max(n_cols[m] for m in maps))
        torch.library.wrap_triton(_encoder_distance_multi_forward_kernel)[(rows,)](
            *slots,
            weight,
            out,
            NUM_MAPS=len(maps),
            ACCUMULATE=first > 0,
            HAS_WEIGHT=weight is not None,
            DISTANCE_L2=distance == "l2",
            COMPUTE_GRAD=compute_grad,
            BLOCK_SIZE=block,
            num_warps=num_warps_for(block),
        )
    return out, grads


def _fake_scale_rows(grad_unit, grad_out):
    return torch.empty_like(grad_unit, memory_format=torch.contiguous_format)


@register_triton_op("scale_rows_triton", _fake_scale_rows)
def scale_rows(grad_unit: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """grad_unit[b, ...] * grad_out[b] in fp32, stored in grad_unit's dtype (contiguous)."""
    grad_unit = grad_unit.contiguous()
    out = torch.empty_like(grad_unit)
    rows = grad_unit.shape[0]
    n_cols = grad_unit.numel() // rows if rows else 0
    if n_cols == 0:
        return out
    block = block_size_for(n_cols)
    blocks_per_row = triton.cdiv(n_cols, block)
    torch.library.wrap_triton(_scale_rows_kernel)[(rows * blocks_per_row,)](
        grad_unit,
        grad_out,
        out,
        n_cols,
        blocks_per_row,
        grad_out.stride(0) if grad_out.dim() else 0,
        BLOCK_SIZE=block,
        num_warps=num_warps_for(block),
    )
    return out

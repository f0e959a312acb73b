"""gaussian_target: seeded Gaussian noise with the statistics of a batch, the
corruption applied in the same pass (DESIGN §2). Same seed and offset, same
noise, on every backend (Triton's tl.randn Philox stream)."""
from __future__ import annotations

from typing import Optional

import torch

from .._extension import HAS_C
from . import reference
from ._backend import resolve
from ._checks import STATS, check_choice, check_float_tensor

OP = "gaussian_target"
INT64_MAX = 2**63 - 1


def _check_given_stats(x, stats, mean, std) -> None:
    if (mean is None) != (std is None):
        raise ValueError(f"{OP}: mean and std must be given together, got only {'std' if mean is None else 'mean'}")
    if mean is None:
        return
    if stats == "standard":
        raise ValueError(f"{OP}: stats='standard' takes no mean and std")
    shape = reference.stats_shape(x, stats)
    groups = torch.Size(shape).numel()
    for name, value in (("mean", mean), ("std", std)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"{OP}: {name} must be a floating-point tensor, got {kind}")
        if value.device != x.device:
            raise ValueError(f"{OP}: {name} is on {value.device} but x is on {x.device}")
        if value.numel() != groups:
            raise ValueError(
                f"{OP}: {name} must have {groups} element(s) for stats={stats!r} "
                f"(e.g. shape {shape}), got shape {list(value.shape)}"
            )


def _check(x, seed, offset, stats, mean, std, clamp, keep, fill) -> None:
    check_float_tensor(x, "x", OP)
    if x.dim() == 0 or x.numel() == 0:
        raise ValueError(f"{OP}: x must be a non-empty batch [B, ...], got shape {list(x.shape)}")
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{OP}: {name} must be an int, got {type(value).__name__}")
        if not 0 <= value <= INT64_MAX:
            raise ValueError(f"{OP}: {name} must be in [0, 2**63), got {value}")
    if offset + x.numel() > INT64_MAX:
        raise ValueError(f"{OP}: offset + x.numel() must stay below 2**63, got offset {offset}")
    check_choice(stats, "stats", STATS, OP)
    _check_given_stats(x, stats, mean, std)
    if clamp is not None:
        if len(clamp) != 2 or not clamp[0] <= clamp[1]:
            raise ValueError(f"{OP}: clamp must be (lo, hi) with lo <= hi, got {clamp!r}")
    if keep is not None:
        if not isinstance(keep, torch.Tensor):
            raise TypeError(f"{OP}: keep must be a tensor (1 = visible, 0 = hole) or None")
        if keep.device != x.device:
            raise ValueError(f"{OP}: keep is on {keep.device} but x is on {x.device}")
        try:
            broadcast = torch.broadcast_shapes(keep.shape, x.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != x.shape:
            raise ValueError(
                f"{OP}: keep of shape {list(keep.shape)} does not broadcast to x's shape {list(x.shape)}"
            )
    if not isinstance(fill, (int, float)):
        raise TypeError(f"{OP}: fill must be a number, got {type(fill).__name__}")


def gaussian_target(
    x: torch.Tensor,
    *,
    seed: int,
    offset: int = 0,
    stats: str = "batch",
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
    clamp: Optional[tuple[float, float]] = None,
    keep: Optional[torch.Tensor] = None,
    fill: float = 0.0,
    backend: str = "auto",
) -> torch.Tensor:
    """T(n): n = mu + sigma * z, z[i] = tl.randn(seed, offset + i) in row-major order.

    stats picks mu and sigma (unbiased) over the whole batch ("batch"), each
    sample ("sample"), each channel ("channel"), or 0 and 1 ("standard").
    `mean` and `std`, given together, replace the computed mu and sigma (e.g.
    statistics all-reduced across processes): one element per group of `stats`,
    in any shape, such as reference.stats_shape(x, stats).
    `clamp=(lo, hi)` clamps the noise; `keep` (broadcastable, 1 = visible)
    applies the corruption: out = keep * n + (1 - keep) * fill. Not differentiable.
    """
    _check(x, seed, offset, stats, mean, std, clamp, keep, fill)
    x = x.detach()
    if mean is not None:
        mean, std = mean.detach(), std.detach()
    chosen = resolve(backend, x.device)
    if chosen == "reference":
        return reference.gaussian_target(
            x, seed=seed, offset=offset, stats=stats, mean=mean, std=std, clamp=clamp, keep=keep, fill=fill
        )
    if keep is not None:
        keep = keep.detach().to(torch.float32).expand(x.shape)
    lo, hi = (None, None) if clamp is None else (float(clamp[0]), float(clamp[1]))
    # One C++ op for CPU and CUDA tensors: the dispatcher picks the kernel by device.
    op = torch.ops.l2l_fast.gaussian_target_triton if chosen == "triton" else torch.ops.l2l_fast.gaussian_target
    return op(x, seed, offset, stats, lo, hi, keep, float(fill), mean, std)


def philox_stream(like: torch.Tensor, *, seed: int, offset: int = 0) -> torch.Tensor:
    """The raw Philox stream of a compiled backend: [like.numel(), 2] int64 holding
    the two uint32 outputs at counter offset + i (for checking it bit for bit)."""
    if not HAS_C:
        raise RuntimeError("philox_stream needs the compiled extension l2l_fast._C")
    return torch.ops.l2l_fast.philox_stream(like, seed, offset)


if HAS_C:

    @torch.library.register_fake("l2l_fast::gaussian_target")
    def _(x, seed, offset, stats, clamp_lo, clamp_hi, keep, fill, mean=None, std=None):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("l2l_fast::philox_stream")
    def _(like, seed, offset):
        return like.new_empty((like.numel(), 2), dtype=torch.int64)

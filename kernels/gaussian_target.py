"""gaussian_target: keep * clamp(mu + sigma * z) + (1 - keep) * fill, in x's dtype.

z[i] = tl.randn(seed, offset + i) for the row-major index i of x, viewed as [B, C, S].
Unless mean and std are given, one kernel writes per-tile (mean, M2) partials of x,
combined in float64 by a few torch ops (Chan's parallel variance, no host sync); one
kernel generates the output.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .encoder_distance import block_size_for, num_warps_for, register_triton_op

STATS_TILE = 4096
GENERATE_TILE = 2048


@triton.jit
def _tile_coords(C, S, c_tiles, s_tiles, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    s_tile = pid % s_tiles
    rest = pid // s_tiles
    b = rest // c_tiles
    cs = (rest % c_tiles) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
    ss = s_tile * BLOCK_S + tl.arange(0, BLOCK_S)  # [BLOCK_S]
    return b, s_tile, cs, ss, cs < C, ss < S


@triton.jit
def _gaussian_stats_kernel(
    x_ptr,  # [B, C, S]
    mean_ptr,  # [B, C, s_tiles] fp32
    m2_ptr,  # [B, C, s_tiles] fp32
    C,
    S,
    c_tiles,
    s_tiles,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    b, s_tile, cs, ss, c_mask, s_mask = _tile_coords(C, S, c_tiles, s_tiles, BLOCK_C, BLOCK_S)
    mask = c_mask[:, None] & s_mask[None, :]
    x = tl.load(x_ptr + (b * C + cs[:, None]) * S + ss[None, :], mask=mask, other=0.0).to(tl.float32)
    count = tl.minimum(S - s_tile * BLOCK_S, BLOCK_S).to(tl.float32)
    mean = tl.sum(x, axis=1) / count  # [BLOCK_C]
    centered = tl.where(mask, x - mean[:, None], 0.0)
    m2 = tl.sum(centered * centered, axis=1)
    partial = (b * C + cs) * s_tiles + s_tile
    tl.store(mean_ptr + partial, mean, mask=c_mask)
    tl.store(m2_ptr + partial, m2, mask=c_mask)


@triton.jit
def _gaussian_target_kernel(
    out_ptr,  # [B, C, S]
    mu_ptr,  # (b, c) at b * stat_stride_b + c * stat_stride_c, fp32
    sigma_ptr,  # as mu_ptr
    keep_ptr,  # [B, C, S] at keep_stride_b, keep_stride_c, keep_stride_s (may be 0)
    seed,
    offset,
    C,
    S,
    c_tiles,
    s_tiles,
    stat_stride_b,
    stat_stride_c,
    keep_stride_b,
    keep_stride_c,
    keep_stride_s,
    clamp_lo,
    clamp_hi,
    fill,
    HAS_STATS: tl.constexpr,
    HAS_CLAMP_LO: tl.constexpr,
    HAS_CLAMP_HI: tl.constexpr,
    HAS_KEEP: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    b, s_tile, cs, ss, c_mask, s_mask = _tile_coords(C, S, c_tiles, s_tiles, BLOCK_C, BLOCK_S)
    mask = c_mask[:, None] & s_mask[None, :]
    index = (b * C + cs[:, None]) * S + ss[None, :]  # [BLOCK_C, BLOCK_S] int64
    noise = tl.randn(seed, offset + index)
    if HAS_STATS:
        stat = b * stat_stride_b + cs * stat_stride_c
        mu = tl.load(mu_ptr + stat, mask=c_mask, other=0.0)
        sigma = tl.load(sigma_ptr + stat, mask=c_mask, other=0.0)
        noise = mu[:, None] + sigma[:, None] * noise
    if HAS_CLAMP_LO:
        noise = tl.maximum(noise, clamp_lo)
    if HAS_CLAMP_HI:
        noise = tl.minimum(noise, clamp_hi)
    if HAS_KEEP:
        keep_offs = b * keep_stride_b + cs[:, None] * keep_stride_c + ss[None, :] * keep_stride_s
        keep = tl.load(keep_ptr + keep_offs, mask=mask, other=0).to(tl.float32)
        noise = keep * noise + (1.0 - keep) * fill
    tl.store(out_ptr + index, noise.to(out_ptr.dtype.element_ty), mask=mask)


def _tiles(c: int, s: int, max_tile: int) -> tuple[int, int, int, int]:
    block_s = block_size_for(s, max_tile)
    block_c = max(1, min(triton.next_power_of_2(c), max_tile // block_s))
    return block_c, block_s, triton.cdiv(c, block_c), triton.cdiv(s, block_s)


# (stride_b, stride_c) of the group of element (b, c, s) in mu and sigma.
STAT_STRIDES = {"batch": (0, 0), "sample": (1, 0), "channel": (0, 1), "standard": (0, 0)}


def _statistics(x3: torch.Tensor, stats: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma), one per group, of x3 [B, C, S] for "batch" | "sample" | "channel"."""
    b, c, s = x3.shape
    if stats == "batch":
        view = x3.reshape(1, 1, -1)
    elif stats == "sample":
        view = x3.reshape(b, 1, -1)
    else:
        view = x3
    vb, vc, vs = view.shape
    block_c, block_s, c_tiles, s_tiles = _tiles(vc, vs, STATS_TILE)
    mean = x3.new_empty((vb, vc, s_tiles), dtype=torch.float32)
    m2 = torch.empty_like(mean)
    torch.library.wrap_triton(_gaussian_stats_kernel)[(vb * c_tiles * s_tiles,)](
        view, mean, m2, vc, vs, c_tiles, s_tiles,
        BLOCK_C=block_c, BLOCK_S=block_s, num_warps=num_warps_for(block_c * block_s),
    )  # fmt: skip

    dims = (0, 2) if stats == "channel" else (1, 2)
    count = x3.numel() // (c if stats == "channel" else vb)
    counts = (vs - torch.arange(s_tiles, device=x3.device, dtype=torch.float64) * block_s).clamp(max=block_s)
    mean = mean.double()
    mu = (mean * counts).sum(dims, keepdim=True) / count
    if count < 2:
        sigma = torch.zeros_like(mu)
    else:
        m2_total = m2.double().sum(dims, keepdim=True) + (counts * (mean - mu).square()).sum(dims, keepdim=True)
        sigma = (m2_total / (count - 1)).sqrt()
    return mu.flatten().float(), sigma.flatten().float()


def _fake_gaussian_target(x, seed, offset, stats, clamp_lo, clamp_hi, keep, fill, mean=None, std=None):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@register_triton_op("gaussian_target_triton", _fake_gaussian_target)
def gaussian_target(
    x: torch.Tensor,
    seed: int,
    offset: int,
    stats: str,
    clamp_lo: Optional[float],
    clamp_hi: Optional[float],
    keep: Optional[torch.Tensor],
    fill: float,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Noise like x (contiguous); keep is broadcastable to x, 1 = visible, 0 = hole;
    mean and std, when given, hold one value per group of `stats`."""
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    b = x.shape[0]
    c = x.shape[1] if x.dim() >= 2 else 1
    s = x.numel() // (b * c)
    x3 = x.view(b, c, s)
    if mean is not None:
        mu, sigma = (t.to(torch.float32).flatten().contiguous() for t in (mean, std))
    elif stats != "standard":
        mu, sigma = _statistics(x3, stats)
    else:
        mu = sigma = None
    if keep is not None:
        keep3 = keep.expand(x.shape).reshape(b, c, s)
        keep_strides = keep3.stride()
    else:
        keep3, keep_strides = None, (0, 0, 0)
    block_c, block_s, c_tiles, s_tiles = _tiles(c, s, GENERATE_TILE)
    torch.library.wrap_triton(_gaussian_target_kernel)[(b * c_tiles * s_tiles,)](
        out,
        mu,
        sigma,
        keep3,
        seed,
        offset,
        c,
        s,
        c_tiles,
        s_tiles,
        *STAT_STRIDES[stats],
        *keep_strides,
        float(clamp_lo) if clamp_lo is not None else 0.0,
        float(clamp_hi) if clamp_hi is not None else 0.0,
        float(fill),
        HAS_STATS=mu is not None,
        HAS_CLAMP_LO=clamp_lo is not None,
        HAS_CLAMP_HI=clamp_hi is not None,
        HAS_KEEP=keep is not None,
        BLOCK_C=block_c,
        BLOCK_S=block_s,
        num_warps=num_warps_for(block_c * block_s),
    )
    return out

"""Plain-PyTorch definitions of every operator: the oracle of the tests and the
fallback when no compiled backend is available. Written for clarity, not speed.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

# Philox4x32-10 constants, as in Triton's tl.randint4x / tl.randn.
PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
# Largest float with MAX_INT32 * scale < 1 (Triton's uint_to_uniform_float).
UNIFORM_SCALE = 4.6566127342e-10
BOX_MULLER_MIN_U = 1.0e-7
TWO_PI = 6.283185307179586


def _mul_hi_lo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product a * b, for a constant a and
    an int64 tensor b of uint32 values, without int64 overflow."""
    a_hi, a_lo = a >> 16, a & 0xFFFF
    b_hi, b_lo = b >> 16, b & 0xFFFF
    low = a_lo * b_lo
    mid = a_hi * b_lo + a_lo * b_hi
    hi = a_hi * b_hi + ((mid + (low >> 16)) >> 16)
    lo = ((mid & 0xFFFF) << 16) + low
    return hi & MASK32, lo & MASK32


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 (Salmon et al., 2011) on int64 tensors holding uint32 values."""
    for _ in range(PHILOX_ROUNDS):
        hi_b, lo_b = _mul_hi_lo(PHILOX_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + PHILOX_KEY_A) & MASK32
        k1 = (k1 + PHILOX_KEY_B) & MASK32
    return c0, c1, c2, c3


def philox_randint4x(seed: int, counters: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Philox of the counters (lo32(c), hi32(c), 0, 0) under the key
    (lo32(seed), hi32(seed)), as Triton's tl.randint4x: four int64 tensors of uint32 values."""
    c = counters.to(torch.int64)
    zeros = torch.zeros_like(c)
    seed &= (1 << 64) - 1
    return philox4x32_10(c & MASK32, (c >> 32) & MASK32, zeros, zeros, seed & MASK32, seed >> 32)


def uint_to_uniform(x: torch.Tensor) -> torch.Tensor:
    """uint32 (held in int64) to a float32 uniform in [0, 1), as Triton does."""
    signed = torch.where(x >= 2**31, x - 2**32, x)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32)


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """First output of Triton's pair_uniform_to_normal, in float32."""
    u1 = torch.clamp_min(u1, BOX_MULLER_MIN_U)
    theta = torch.tensor(TWO_PI, dtype=torch.float32) * u2
    radius = torch.sqrt(torch.tensor(-2.0, dtype=torch.float32) * torch.log(u1))
    return radius * torch.cos(theta)


def philox_normal(seed: int, offset: int, numel: int, device=None) -> torch.Tensor:
    """z[i] = tl.randn(seed, offset + i) for i < numel, float32."""
    counters = torch.arange(numel, dtype=torch.int64, device=device) + offset
    r0, r1, _, _ = philox_randint4x(seed, counters)
    return box_muller(uint_to_uniform(r0), uint_to_uniform(r1))


def encoder_distance(
    student: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    *,
    distance: str = "mse",
) -> torch.Tensor:
    """out[b] = weight[b] * mean_j (s - t)^2 ("mse") or weight[b] * ||s - t|| ("l2"), fp32."""
    diff = (student.float() - target.float()).reshape(student.shape[0], -1)
    if distance == "mse":
        out = diff.square().mean(dim=1)
    elif distance == "l2":
        out = torch.linalg.vector_norm(diff, dim=1)
    else:
        raise ValueError(f"distance must be 'mse' or 'l2', got {distance!r}")
    if weight is not None:
        out = out * weight.float()
    return out


def encoder_distance_multi(
    students: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    *,
    distance: str = "mse",
) -> torch.Tensor:
    """Sum over feature maps of encoder_distance, per sample."""
    return sum(
        encoder_distance(s, t, weight, distance=distance) for s, t in zip(students, targets)
    )


def stats_shape(x: torch.Tensor, stats: str) -> list[int]:
    """The shape of one statistic per group, broadcastable to x: [1, ...] ("batch"),
    [B, 1, ...] ("sample"), [1, C, 1, ...] ("channel")."""
    shape = [1] * x.dim()
    if stats == "sample":
        shape[0] = x.shape[0]
    elif stats == "channel" and x.dim() >= 2:
        shape[1] = x.shape[1]
    return shape


def noise_statistics(
    x: torch.Tensor,
    stats: str,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) in the shape stats_shape(x, stats): the given mean and std, or
    computed in float64; sigma is the unbiased std (0 for a single element)."""
    if stats == "standard":
        return torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
    if mean is not None:
        shape = stats_shape(x, stats)
        return mean.reshape(shape), std.reshape(shape)
    x64 = x.double()
    if stats == "batch":
        dims = tuple(range(x.dim()))
    elif stats == "sample":
        dims = tuple(range(1, x.dim()))
    elif stats == "channel":
        dims = (0,) + tuple(range(2, x.dim()))
    else:
        raise ValueError(f"stats must be 'batch', 'sample', 'channel' or 'standard', got {stats!r}")
    count = 1
    for d in dims:
        count *= x.shape[d]
    mu = x64.mean(dim=dims, keepdim=True) if dims else x64
    if count < 2:
        return mu, torch.zeros_like(mu)
    sigma = x64.std(dim=dims, keepdim=True, correction=1)
    return mu, sigma


def gaussian_target(x: torch.Tensor, *, seed: int, offset: int = 0, stats: str = "batch", mean=None, std=None,
                    clamp=None, keep=None, fill: float = 0.0) -> torch.Tensor:
    """keep * clamp(mu + sigma * z) + (1 - keep) * fill, in x's dtype; mu and sigma
    are mean and std when given, else the statistics of x (noise_statistics)."""
    mu, sigma = noise_statistics(x, stats, mean, std)
    z = philox_normal(seed, offset, x.numel(), device=x.device).reshape(x.shape)
    noise = mu.float().to(x.device) + sigma.float().to(x.device) * z
    if clamp is not None:
        noise = noise.clamp(clamp[0], clamp[1])
    if keep is not None:
        keep = keep.float()
        noise = keep * noise + (1.0 - keep) * fill
    return noise.to(x.dtype)

"""One step's data (StepInputs) and its noise source.

Under several processes every rank holds an equal shard of the global batch:
`noise_offset` points at the rank's first forget sample in the global Philox
stream, so that the ranks' noise together is the one-process noise, and batch or
channel statistics are those of the global forget batch (sums all-reduced, then
one fused gaussian_target call with the given mean and std).

noise_stats "mixed" takes one mean and unbiased std over the whole step batch,
retain and forget images together, as the authors' MAGE code does
(`torch.std(samples)` over the mixed batch); the other modes are gaussian_target's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..ops import STATS, gaussian_target
from ..training import distributed

NOISE_STATS = STATS + ("mixed",)
DIFFUSION_TARGETS = ("pure_noise", "noise_image", "whole_noise")


@dataclass
class StepInputs:
    """R retain and F forget images of one step and their corruptions."""

    adapter: Any
    retain: torch.Tensor
    forget: torch.Tensor
    corruption: Any  # for the R + F samples, retain first
    alpha: float
    distance: str
    noise_seed: int
    noise_offset: int
    noise_stats: str
    noise_clamp: Optional[tuple[float, float]]
    retain_index: Optional[torch.Tensor] = None  # dataset indices of the rows, on the host (caches)
    forget_index: Optional[torch.Tensor] = None
    prepared: Optional[dict] = None  # {"retain", "forget"}: SampleCaches of adapter.prepare (frozen_prepare)
    ctx: distributed.Context = distributed.Context()
    diffusion_target: str = "pure_noise"  # a DIFFUSION_TARGETS entry (UnlearnConfig.diffusion_target)
    forget_maps: Optional[int] = None  # the forget term on the last N maps (UnlearnConfig.forget_maps)

    @property
    def num_retain(self) -> int:
        return self.retain.shape[0]

    def part(self, which: str):
        index = slice(0, self.num_retain) if which == "retain" else slice(self.num_retain, None)
        return self.adapter.select(self.corruption, index)

    def noise(self, like: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """T(n) for the forget images `like`: n = mu + sigma * z, clamped, holes filled."""
        if keep is not None:
            keep = keep.to(like.device, like.dtype, non_blocking=True)
        mean = std = None
        stats = self.noise_stats
        if stats == "mixed":
            stats = "batch"
            mean, std = global_statistics(self.ctx, torch.cat([self.retain, self.forget]), stats)
        elif self.ctx.enabled and stats in ("batch", "channel"):
            mean, std = global_statistics(self.ctx, like, stats)
        return gaussian_target(like, seed=self.noise_seed, offset=self.noise_offset, stats=stats,
                               mean=mean, std=std, clamp=self.noise_clamp, keep=keep)


def global_statistics(ctx: distributed.Context, x: torch.Tensor, stats: str):
    """Mean and unbiased std of the global batch ("batch": one value, "channel": per channel)
    when every rank holds an equal shard of it; fp64 sums all-reduced across the ranks."""
    dims = tuple(range(x.dim())) if stats == "batch" else (0,) + tuple(range(2, x.dim()))
    x64 = x.detach().double()
    sums = torch.stack([x64.sum(dim=dims, keepdim=True), x64.square().sum(dim=dims, keepdim=True)])
    distributed.all_reduce_sum(ctx, sums)
    count = ctx.world_size * x.numel() // (1 if stats == "batch" else x.shape[1])
    mean = sums[0] / count
    if count < 2:
        return mean, torch.zeros_like(mean)
    variance = (sums[1] - count * mean.square()).clamp_min(0) / (count - 1)
    return mean, variance.sqrt()

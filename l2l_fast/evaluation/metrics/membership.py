"""Membership inference on per-image scores: the ROC AUC of members against non-members and a
seeded bootstrap interval. A higher score means "more likely a member" (the audit scores an image
by minus its completion error: a model completes what it trained on better)."""
from __future__ import annotations

from typing import Callable

import torch

MIN_PER_SIDE = 10  # fewer images per side give a bootstrap interval too coarse to read


def roc_auc(members: torch.Tensor, nonmembers: torch.Tensor) -> torch.Tensor:
    """P(member score > non-member score) + P(tie) / 2 (the Mann-Whitney U statistic / (n m)),
    for [n] and [m] scores, or batched [B, n] and [B, m] (one AUC per row)."""
    members, nonmembers = members.double(), nonmembers.double()
    ordered = nonmembers.sort(dim=-1).values.contiguous()
    values = members.contiguous()
    below = torch.searchsorted(ordered, values, side="left")
    not_above = torch.searchsorted(ordered, values, side="right")
    return (below + not_above).sum(-1).double() / (2.0 * members.shape[-1] * nonmembers.shape[-1])


def bootstrap_interval(statistic: Callable[..., torch.Tensor], *samples: torch.Tensor, seed: int,
                       resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic(*resampled)` over `resamples` draws, each sample [n_i]
    resampled with replacement on its own (stratified), drawn from `seed`. `statistic` takes
    batched samples [resamples, n_i] and returns [resamples]."""
    generator = torch.Generator().manual_seed(seed)
    drawn = [s[torch.randint(s.shape[0], (resamples, s.shape[0]), generator=generator)] for s in samples]
    values = statistic(*drawn).double()
    tail = (1.0 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    return float(low), float(high)


def check_sizes(**sides: int) -> None:
    """ValueError naming the side with fewer than MIN_PER_SIDE images."""
    for name, count in sides.items():
        if count < MIN_PER_SIDE:
            raise ValueError(f"{name}: {count} images; the membership test's bootstrap interval needs at least "
                             f"{MIN_PER_SIDE} per side")

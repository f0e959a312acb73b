"""Noise schedules in Palette's terms: γ_t = ᾱ_t = prod_{s<=t} (1 - β_s)."""
from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "quad", "cosine")


def make_betas(schedule: str = "linear", n_timestep: int = 1000, linear_start: float = 1e-4,
               linear_end: float = 2e-2, cosine_s: float = 8e-3) -> torch.Tensor:
    """β_1..β_T (float64), as Palette's `make_beta_schedule` for these schedules."""
    if schedule not in SCHEDULES:
        raise ValueError(f"beta schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not isinstance(n_timestep, int) or n_timestep < 2:
        raise ValueError(f"n_timestep must be an integer >= 2, got {n_timestep!r}")
    if schedule == "linear":
        return torch.linspace(linear_start, linear_end, n_timestep, dtype=torch.float64)
    if schedule == "quad":
        return torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n_timestep, dtype=torch.float64) ** 2
    steps = torch.arange(n_timestep + 1, dtype=torch.float64) / n_timestep + cosine_s
    alphas = torch.cos(steps / (1 + cosine_s) * math.pi / 2).square()
    alphas = alphas / alphas[0]
    return (1 - alphas[1:] / alphas[:-1]).clamp(max=0.999)


class Schedule:
    """γ and the DDPM posterior coefficients of one beta schedule (float32 tables)."""

    def __init__(self, **kwargs):
        with torch.device("cpu"):  # host tables, also when the model is built under torch.device("meta")
            self._build(**kwargs)

    def _build(self, **kwargs):
        betas = make_betas(**kwargs)
        gammas = torch.cumprod(1 - betas, dim=0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), gammas[:-1]])
        variance = betas * (1 - prev) / (1 - gammas)
        self.num_timesteps = len(betas)
        self.gammas = gammas.float()
        self.log_variance = variance.clamp(min=1e-20).log().float()
        self.mean_coef_y0 = (betas * prev.sqrt() / (1 - gammas)).float()
        self.mean_coef_yt = ((1 - prev) * (1 - betas).sqrt() / (1 - gammas)).float()

"""The family's generation settings for evaluation (MAGE iterations and temperature,
Palette's sampler and steps), applied to an adapter as one `sample(images, corruption, batch)`."""
from __future__ import annotations

import copy
from typing import Callable

import torch

# family -> {setting: default}; the defaults are each model's own
SAMPLER_DEFAULTS = {
    "mae": {},
    "vq": {"iterations": 8, "temperature": 4.5},
    "diffusion": {"method": "ddim", "steps": 50, "eta": 0.0},
}
DIFFUSION_METHODS = ("ddim", "ddpm")


def check_sampler(family: str, settings: dict, where: str = "sampler") -> dict:
    """The family's settings with defaults filled in; ValueError naming the key otherwise."""
    if family not in SAMPLER_DEFAULTS:
        raise ValueError(f"{where}: unknown family {family!r}; known: {sorted(SAMPLER_DEFAULTS)}")
    if not isinstance(settings, dict):
        raise ValueError(f"{where}.{family} must be a mapping, got {settings!r}")
    defaults = SAMPLER_DEFAULTS[family]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"{where}.{family} has unknown keys {unknown}; allowed: {sorted(defaults)}")
    out = {**defaults, **settings}
    for key in ("iterations", "steps"):
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 1):
            raise ValueError(f"{where}.{family}.{key} must be a positive integer, got {out[key]!r}")
    for key in ("temperature", "eta"):
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], (int, float)) or out[key] < 0):
            raise ValueError(f"{where}.{family}.{key} must be a number >= 0, got {out[key]!r}")
    if "method" in out and out["method"] not in DIFFUSION_METHODS:
        raise ValueError(f"{where}.{family}.method must be one of {DIFFUSION_METHODS}, got {out['method']!r}")
    return out


def sampler_for(adapter, settings: dict, seed: int = 0) -> Callable[[torch.Tensor, object, int], torch.Tensor]:
    """sample(images on the model's device, corruption, batch index) -> completions clamped to [0, 1],
    as `evaluation.generate` returns them."""
    sample = _family_sampler(adapter, settings, seed)
    return lambda images, corruption, batch: sample(images, corruption, batch).clamp(0.0, 1.0)


def _family_sampler(adapter, settings: dict, seed: int):
    """The family's own sampler, unclamped.

    MAGE draws its Gumbel noise from a generator seeded by (seed, batch index), so a row
    is the same whether or not an evaluation was interrupted; Palette seeds every call."""
    family = getattr(adapter.model, "family", None)
    settings = check_sampler(family, settings) if family in SAMPLER_DEFAULTS else {}
    if family == "vq":
        def sample(images, corruption, batch):
            generator = torch.Generator(images.device).manual_seed(seed * 1_000_003 + batch)
            return adapter.model.generate(images, corruption.to(images.device), steps=settings["iterations"],
                                          temperature=float(settings["temperature"]), generator=generator)
        return sample
    if family == "diffusion":
        configured = copy.copy(adapter)  # keeps its patch size and value range
        configured.sample_method, configured.sample_steps = settings["method"], settings["steps"]
        configured.eta, configured.seed = float(settings["eta"]), seed
        return lambda images, corruption, batch: configured.generate(images, corruption)
    return lambda images, corruption, batch: adapter.generate(images, corruption)

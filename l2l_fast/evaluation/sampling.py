"""The family's generation settings for evaluation (MAGE iterations and temperature,
Palette's sampler and steps), applied to an adapter as one `sample(images, corruption, batch)`."""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch

from .config import SamplerConfig


def sampler_for(adapter, settings: Optional[SamplerConfig], seed: int = 0
                ) -> Callable[[torch.Tensor, object, int], torch.Tensor]:
    """sample(images on the model's device, corruption, batch index) -> completions clamped to [0, 1],
    as `evaluation.generate` returns them. `settings` None: the adapter's own generate, as built."""
    sample = _family_sampler(adapter, settings, seed)
    return lambda images, corruption, batch: sample(images, corruption, batch).clamp(0.0, 1.0)


def _family_sampler(adapter, settings: Optional[SamplerConfig], seed: int):
    """The family's own sampler, unclamped.

    MAGE draws its Gumbel noise from a generator seeded by (seed, batch index), so a row
    is the same whether or not an evaluation was interrupted; Palette seeds every call."""
    family = getattr(adapter.model, "family", None)
    settings = None if settings is None else settings.family(family)
    if family == "vq" and settings is not None:
        configured = copy.copy(adapter)  # keeps its pixel normalisation and paste
        configured.steps, configured.temperature = settings.iterations, float(settings.temperature)

        def sample(images, corruption, batch):
            configured.seed = seed * 1_000_003 + batch
            return configured.generate(images, corruption)
        return sample
    if family == "diffusion" and settings is not None:
        configured = copy.copy(adapter)  # keeps its patch size and value range
        configured.sample_method, configured.sample_steps = settings.method, settings.steps
        configured.eta, configured.seed = float(settings.eta), seed
        return lambda images, corruption, batch: configured.generate(images, corruption)
    return lambda images, corruption, batch: adapter.generate(images, corruption)

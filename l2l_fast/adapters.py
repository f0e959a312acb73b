"""Adapters: the one place that knows how a generator splits into corruption T,
encoder E and decoder D. The engine sees only this interface."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .masks import MaskSpec, patch_keep, pixel_keep
from .models import MAE

Embedding = Union[torch.Tensor, list[torch.Tensor]]


class Adapter:
    """How to corrupt, encode and generate with one generator."""

    model: nn.Module
    encoder: nn.Module
    image_shape: tuple[int, int, int]  # (C, H, W) the model takes

    def draw(self, spec: MaskSpec, batch: int, generator: torch.Generator):
        """Draw one corruption per sample (shared by a sample's student and teacher inputs)."""
        raise NotImplementedError

    def noise_keep(self, corruption) -> Optional[torch.Tensor]:
        """Pixel mask (1 = visible) applying T to a noise image, or None if encode does it."""
        return None

    def encode(self, encoder: nn.Module, images: torch.Tensor, corruption) -> Embedding:
        raise NotImplementedError

    def generate(self, images: torch.Tensor, corruption) -> torch.Tensor:
        raise NotImplementedError

    def select(self, corruption, index: slice):
        """The corruption of a sub-batch."""
        return corruption[index]


class MAEAdapter(Adapter):
    """MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""

    def __init__(self, model: MAE):
        self.model = model
        self.encoder = model.encoder
        self.image_shape = (model.in_chans, model.img_size, model.img_size)

    def draw(self, spec, batch, generator):
        return patch_keep(spec, self.model.grid, batch, generator)

    def noise_keep(self, corruption):
        return pixel_keep(corruption, self.model.grid, self.model.patch_size)

    def encode(self, encoder, images, corruption):
        return encoder(images, corruption.to(images.device))

    def generate(self, images, corruption):
        return self.model.generate(images, corruption.to(images.device))


def adapter_for(model: nn.Module, adapter: Optional[Adapter] = None) -> Adapter:
    if adapter is not None:
        return adapter
    if isinstance(model, MAE):
        return MAEAdapter(model)
    raise TypeError(
        f"model: no built-in adapter for {type(model).__name__}; pass adapter= "
        f"(built-in models: MAE)"
    )

"""`adapt`: an adapter for a user's own image-to-image model."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from ..models.masks import keep_pixels
from .base import Adapter

Corrupt = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def zero_fill(images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The default corruption: the hole is set to 0."""
    return images * keep


class CustomAdapter(Adapter):
    """A model whose encoder takes the corrupted image: T(x) = corrupt(x, keep),
    keep a [B, 1, H, W] pixel mask built from the mask spec on a patch grid."""

    def __init__(self, model, encoder, image_shape, patch_size, corrupt, generate, task_loss):
        self.model = model
        self.encoder = encoder
        self.image_shape = tuple(image_shape)
        channels, height, width = self.image_shape
        if height % patch_size or width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image size {height}x{width}")
        self.patch_size = patch_size
        self.grid = (height // patch_size, width // patch_size)
        self.corrupt = corrupt
        self._generate = generate
        self._task_loss = task_loss

    def draw(self, spec, batch, generator):
        return keep_pixels(spec, self.grid, self.patch_size, batch, generator)

    def pixel_keep(self, corruption):
        return corruption

    def noise_keep(self, corruption):
        return corruption

    def encode(self, encoder, images, corruption):
        return encoder(self.corrupt(images, corruption.to(images.device, images.dtype, non_blocking=True)))

    def generate(self, images, corruption):
        keep = corruption.to(images.device, images.dtype, non_blocking=True)
        with torch.no_grad():
            if self._generate is not None:
                out = self._generate(self.model, self.corrupt(images, keep), keep)
            else:
                out = self.model(self.corrupt(images, keep))
        return keep * images + (1 - keep) * out.to(images.dtype)

    def task_loss(self, images, corruption, targets=None):
        targets = images if targets is None else targets
        if self._task_loss is not None:
            return self._task_loss(self.model, images, corruption, targets)
        keep = corruption.to(images.device, images.dtype, non_blocking=True)
        out = self.model(self.corrupt(images, keep))
        hole = 1 - keep
        return ((out - targets).square() * hole).sum() / (hole.sum() * images.shape[1]).clamp_min(1)


def adapt(
    model: nn.Module,
    encoder: Union[str, nn.Module],
    *,
    image_shape: tuple[int, int, int],
    patch_size: int,
    corrupt: Optional[Corrupt] = None,
    generate: Optional[Callable] = None,
    task_loss: Optional[Callable] = None,
) -> CustomAdapter:
    """Build an adapter for `model`.

    encoder: the name of the encoder submodule (e.g. "backbone.encoder") or the
      module itself; only its parameters are tuned.
    image_shape: (C, H, W) the model takes. patch_size: the grid on which mask
      specs ("inpaint:K", ...) are drawn.
    corrupt(images, keep) -> encoder input (default: zero the hole).
    generate(model, corrupted, keep) -> images (default: model(corrupted)); the
      visible region is pasted back from the input.
    task_loss(model, images, keep, targets) -> scalar: how far the model's fill of the
      hole is from `targets` (default: pixel MSE inside the hole).
    """
    if isinstance(encoder, str):
        try:
            encoder_module = model.get_submodule(encoder)
        except AttributeError as error:
            raise ValueError(f"encoder: {type(model).__name__} has no submodule {encoder!r}") from error
    elif isinstance(encoder, nn.Module):
        encoder_module = encoder
        if not any(m is encoder_module for m in model.modules()):
            raise ValueError("encoder: the module given is not a submodule of model")
    else:
        raise TypeError(f"encoder must be a submodule name or an nn.Module, got {type(encoder).__name__}")
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    return CustomAdapter(model, encoder_module, image_shape, patch_size, corrupt or zero_fill, generate, task_loss)

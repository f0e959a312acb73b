"""The adapter interface: the one place that knows how a generator splits into
corruption T, encoder E and decoder D. The engine sees only this interface."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from ..models.masks import MaskSpec, patch_keep, pixel_keep
from ..models.pixels import Pixels, pixels_of

Embedding = Union[torch.Tensor, list[torch.Tensor]]


class Adapter:
    """How to corrupt, encode and generate with one generator.

    A step of unlearning, in these terms (R retain, F forget images):
        c       = draw(spec, |R| + |F|, generator)          one corruption per sample
        real    = prepare(cat(x_R, x_F))                    once per real image (VQ: tokens)
        n_F     = gaussian_target(x_F, keep=noise_keep(c_F))
        noise   = prepare(noise_input(x_F, n_F, c_F))       only for forget samples
        target  = encode(teacher, concat(real[:R], noise), c)
        student = encode(encoder, real, c)
    """

    model: nn.Module
    encoder: nn.Module
    image_shape: tuple[int, int, int]  # (C, H, W) the model takes
    # True when a sample under a fixed mask spec always gets the same corruption
    # (no random noise levels or augmentation): its teacher target can be cached.
    deterministic_corruption: bool = True
    # True when `prepare` is a frozen, deterministic function of the image (the VQ
    # tokenizer): unlearn then computes it once per real image of the run.
    frozen_prepare: bool = False

    @property
    def pixels(self) -> Pixels:
        """How the model reads pixels; the adapter's API takes and returns [0, 1] images."""
        return pixels_of(self.model)

    @property
    def noise_clamp(self) -> Optional[tuple[float, float]]:
        """The default clamp of noise images ([0, 1] for a bounded model)."""
        return self.pixels.noise_clamp

    def paste(self, images: torch.Tensor, generated: torch.Tensor, corruption) -> torch.Tensor:
        """`generated` in the hole (clamped to [0, 1] for a bounded model), `images` (exactly) outside it."""
        if self.pixels.bounded:
            generated = generated.clamp(0.0, 1.0)
        visible = self.pixel_keep(corruption).to(images.device, non_blocking=True).bool()
        return torch.where(visible, images, generated.to(images.dtype))

    def fixed_targets(self, spec: MaskSpec) -> bool:
        """Whether a sample's teacher target is the same at every step under `spec`."""
        return spec.deterministic and self.deterministic_corruption

    def blocks(self) -> list[nn.Module]:
        """The encoder's repeated blocks (for activation checkpointing)."""
        for name in ("blocks", "input_blocks"):
            found = getattr(self.encoder, name, None)
            if found is not None:
                return list(found)
        return []

    def draw(self, spec: MaskSpec, batch: int, generator: torch.Generator):
        """Draw one corruption per sample (shared by a sample's student and teacher inputs)."""
        raise NotImplementedError

    def select(self, corruption, index: slice):
        """The corruption of a sub-batch."""
        return corruption[index]

    def pixel_keep(self, corruption) -> torch.Tensor:
        """The corruption's visible pixels, float [B, 1, H, W] (1 = visible)."""
        return pixel_keep(corruption, self.model.grid, self.model.patch_size)

    def noise_keep(self, corruption) -> Optional[torch.Tensor]:
        """Pixel mask for gaussian_target's `keep` (1 = noise kept, 0 = fill), or None."""
        return None

    def noise_input(self, images: torch.Tensor, noise: torch.Tensor, corruption) -> torch.Tensor:
        """The image standing for n_x, from the forget images and their noise."""
        return noise

    def target_corruption(self, corruption, num_retain: int, diffusion_target: str = "pure_noise"):
        """The corruption the teacher applies to the mixed batch [x_R; n_F] (retain rows
        first): the samples' own, except where a family defines its forget target otherwise
        (diffusion: see DiffusionAdapter)."""
        return corruption

    def prepare(self, images: torch.Tensor):
        """Frozen preprocessing shared by student and teacher (MAE: the model's pixel
        normalisation; VQ: normalise, then tokenize)."""
        return images

    def concat(self, first, second):
        return torch.cat([first, second])

    def take(self, prepared, index: slice):
        return prepared[index]

    def encode(self, encoder: nn.Module, inputs, corruption) -> Embedding:
        raise NotImplementedError

    def generate(self, images: torch.Tensor, corruption) -> torch.Tensor:
        """Fill the corrupted region of `images`; the rest is the input, exactly."""
        raise NotImplementedError

    def task_loss(self, images: torch.Tensor, corruption, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The family's own training loss (scalar): fill the hole of T(images) with
        `targets` (default: the images themselves)."""
        raise NotImplementedError


class PatchGridAdapter(Adapter):
    """A generator whose corruption hides whole cells of its patch (token) grid; the model
    has `encoder`, `grid`, `in_chans` and `img_size`."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.encoder = model.encoder
        self.image_shape = (model.in_chans, model.img_size, model.img_size)

    def draw(self, spec: MaskSpec, batch: int, generator: torch.Generator):
        return patch_keep(spec, self.model.grid, batch, generator)

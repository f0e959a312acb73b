"""Palette-style diffusion: T is the pixel mask plus a draw of the noise level γ
and the noises, E the UNet's γ embedding, input blocks and middle block, D its
output blocks and head.

The forget target (DESIGN §1, UnlearnConfig.diffusion_target): by default the
authors' (jpmorganchase/i2i_Palette `Network.forward(fix_decoder=True)`): the
teacher sees, for a forget sample, the same y_cond as the student (the real masked
image, ε_cond in the hole), the same γ and ε, the clean image outside the hole of
y_t, and inside it ε alone: their `q_sample` keeps √γ·y_0 + √(1−γ)·ε for retain rows
and turns forget rows into √(1−γ)·ε + (1 − √(1−γ))·ε = ε. "noise_image" instead
noises the Gaussian image n in the hole: √γ·n + √(1−γ)·ε. Both keep the forget image's
visible part in y_cond, so at high noise (small γ) the target is the student's own input
and the forget term has no pull where sampling sets the hole's coarse content (measured on
the 3,000-step Palette: the target lies 0.24% of the embedding's energy away for γ < 0.05,
0.53 for γ > 0.95). "whole_noise" gives the teacher T(n) of a whole Gaussian image n, its
visible part in y_cond too, as the other families' targets: 0.89 to 1.58 of that energy
away at every γ (benchmarks/results/quality_diffusion_whole_noise).

Images are [0, 1] and mapped to the model's pixel space (Palette's [-1, 1]) by
its pixel convention. The mask is a patch mask (masks.py) on a grid of
`patch_size` pixels: by default image_size / 7 (4 px on 28 x 28, the MAE's 7 x 7
grid) or else image_size / 8 (masks.default_patch_size, as the diffusers adapters).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Optional

import torch

from ..models import PaletteUNet
from ..models.masks import default_patch_size, keep_pixels, patch_keep, pixel_keep
from ..models.palette import SAMPLERS
from .base import Adapter


@dataclass
class DiffusionCorruption:
    """Per sample: the patch mask, its pixel mask (1 = known), γ, the noise ε of y_t,
    the noise ε_cond that fills the hole of the condition image, and whether the hole of
    y_t is ε alone (the authors' forget target)."""

    keep: torch.Tensor        # [B, L] bool (a pixel mask's: [B, H * W])
    pixel: torch.Tensor       # [B, 1, H, W] float
    gamma: torch.Tensor       # [B]
    noise: torch.Tensor       # [B, C, H, W]
    cond_noise: torch.Tensor  # [B, C, H, W]
    pure_noise: torch.Tensor  # [B] bool

    def __getitem__(self, index: slice) -> "DiffusionCorruption":
        return DiffusionCorruption(*(getattr(self, f.name)[index] for f in fields(self)))

    def to(self, device) -> "DiffusionCorruption":
        return DiffusionCorruption(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))


class DiffusionAdapter(Adapter):
    """Palette: encode = the UNet encoder on Palette's training input; generate =
    reverse diffusion seeded by `seed`: DDIM over `sample_steps` steps (at most the
    test schedule's length), or `sample_method="ddpm"` over all steps."""

    deterministic_corruption = False  # a fresh noise level and noise per sample and step

    def __init__(self, model: PaletteUNet, *, patch_size: Optional[int] = None,
                 sample_method: str = "ddim",
                 sample_steps: Optional[int] = 50, eta: float = 0.0, seed: int = 0):
        self.model = model
        self.encoder = model.encoder
        self.image_shape = model.image_shape
        self.patch_size = patch_size or default_patch_size(model.image_size)
        if model.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {model.image_size}")
        self.grid = (model.image_size // self.patch_size,) * 2
        if sample_method not in SAMPLERS:
            raise ValueError(f"sample_method must be one of {SAMPLERS}, got {sample_method!r}")
        self.sample_method, self.sample_steps, self.eta, self.seed = sample_method, sample_steps, eta, seed

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        return self.pixels.normalize(images)

    def from_model(self, images: torch.Tensor) -> torch.Tensor:
        return self.pixels.denormalize(images)

    def draw(self, spec, batch, generator):
        if spec.pixel_level:
            pixel = keep_pixels(spec, self.grid, self.patch_size, batch, generator)
            keep = pixel.flatten(1).bool()  # the mask on the pixel grid
        else:
            keep = patch_keep(spec, self.grid, batch, generator)
            pixel = pixel_keep(keep, self.grid, self.patch_size)
        gamma = self.model.draw_gammas(batch, generator)
        noise = torch.randn(batch, *self.image_shape, generator=generator)
        cond_noise = torch.randn(batch, *self.image_shape, generator=generator)
        return DiffusionCorruption(keep, pixel, gamma, noise, cond_noise, torch.zeros(batch, dtype=torch.bool))

    def pixel_keep(self, corruption):
        return corruption.pixel

    def noise_keep(self, corruption):
        return None

    def noise_input(self, images, noise, corruption):
        """The forget image with the hole replaced by the noise: keep·x + (1−keep)·n."""
        return torch.where(corruption.pixel.to(images.device).bool(), images, noise)

    def target_corruption(self, corruption, num_retain, diffusion_target="pure_noise"):
        """"pure_noise": the forget rows' y_t holds ε alone in the hole (the image's hole,
        real or noise, is then never read); "noise_image": the samples' own corruption."""
        if diffusion_target in ("noise_image", "whole_noise"):
            return corruption
        if diffusion_target != "pure_noise":
            raise ValueError(f"diffusion_target must be 'pure_noise', 'noise_image' or 'whole_noise', got "
                             f"{diffusion_target!r}")
        forget = torch.arange(corruption.gamma.shape[0], device=corruption.pure_noise.device) >= num_retain
        return dataclasses.replace(corruption, pure_noise=forget)

    def unet_input(self, images: torch.Tensor, corruption: DiffusionCorruption) -> torch.Tensor:
        c = corruption.to(images.device)
        x = self.to_model(images)
        return self.model.unet_input(x, c.pixel, c.gamma, c.noise.to(x.dtype), c.cond_noise.to(x.dtype),
                                     c.pure_noise)

    def encode(self, encoder, images, corruption):
        maps, _ = encoder(self.unet_input(images, corruption), corruption.gamma.to(images.device))
        return maps

    def generate(self, images, corruption):
        c = corruption.to(images.device)
        x = self.to_model(images)
        y_cond = self.model.condition(x, c.pixel, c.cond_noise.to(x.dtype))
        steps = None
        if self.sample_method == "ddim" and self.sample_steps is not None:
            steps = min(self.sample_steps, self.model.test_schedule.num_timesteps)
        generator = torch.Generator().manual_seed(self.seed)
        out = self.model.sample(y_cond, x, c.pixel, method=self.sample_method, steps=steps, eta=self.eta,
                                generator=generator)
        return torch.where(c.pixel.bool(), images, self.from_model(out))

    def task_loss(self, images, corruption, targets=None):
        """ε-prediction MSE in the hole; with `targets`, y_0 in the hole is the targets'."""
        c = corruption.to(images.device)
        y_0 = self.to_model(images if targets is None else torch.where(c.pixel.bool(), images, targets))
        return self.model.loss(y_0, c.pixel, c.gamma, c.noise.to(y_0.dtype), c.cond_noise.to(y_0.dtype))

"""Hugging Face `ViTMAEForPreTraining`: T drops the hidden patches, E is `model.vit`,
D its MAE decoder (frozen by the encoder methods, as every decoder).

HF's encoder masks at random: it keeps the first `int(L * (1 - mask_ratio))` patches
of `argsort(noise)`. The adapter passes a `noise` that sorts the corruption's visible
patches first, in ascending order, and sets `mask_ratio` for the call so that exactly
they are kept: the encoder sees what this package's MAE would see. Generation is the
decoder's patches through `unpatchify`, de-normalised, with the visible pixels pasted
back from the input. With `norm_pix_loss` the model predicts per-patch normalised
pixels: `task_loss` follows it, generations are those predictions as they are.
"""
from __future__ import annotations

import contextlib

import torch

from ..models.masks import patch_keep, pixel_keep
from ..models.pixels import IMAGENET
from .base import Adapter


def keep_first(keep: torch.Tensor) -> torch.Tensor:
    """[B, L] bool -> noise whose ascending argsort lists the visible patches first, in order."""
    num_patches = keep.shape[1]
    order = torch.arange(num_patches, dtype=torch.float32, device=keep.device)
    return (~keep).float() * num_patches + order


@contextlib.contextmanager
def keeping(encoder: torch.nn.Module, visible: int, num_patches: int):
    """Within: every HF ViTMAE embedding under `encoder` (a wrapped one too) keeps `visible` patches."""
    configs = {id(m.config): m.config for m in encoder.modules()
               if hasattr(m, "random_masking") and hasattr(m, "config")}
    saved = {key: config.mask_ratio for key, config in configs.items()}
    ratio = (num_patches - visible - 0.5) / num_patches  # int(L * (1 - ratio)) == visible, free of rounding
    try:
        for config in configs.values():
            config.mask_ratio = ratio
        yield
    finally:
        for key, config in configs.items():
            config.mask_ratio = saved[key]


class HFMAEAdapter(Adapter):
    """HF ViTMAEForPreTraining: T drops the hidden patches, E is `model.vit`, D `model.decoder`."""

    def __init__(self, model):
        c = model.config
        self.model = model
        self.encoder = model.vit
        self.patch_size = c.patch_size
        self.grid = (c.image_size // c.patch_size,) * 2
        self.image_shape = (c.num_channels, c.image_size, c.image_size)

    @property
    def pixels(self):
        """The model's `pixels` (load_hf_mae sets it), else ImageNet's, HF's image processor default."""
        return getattr(self.model, "pixels", IMAGENET)

    def blocks(self):
        layers = getattr(self.encoder, "layers", None)
        return list(layers) if layers is not None else list(self.encoder.encoder.layer)

    def draw(self, spec, batch, generator):
        return patch_keep(spec, self.grid, batch, generator)

    def pixel_keep(self, corruption):
        return pixel_keep(corruption, self.grid, self.patch_size)

    def noise_keep(self, corruption):
        return self.pixel_keep(corruption)

    def prepare(self, images):
        return self.pixels.normalize(images)

    def _vit(self, encoder, images, keep):
        keep = keep.to(images.device, non_blocking=True)
        counts = keep.sum(dim=1)
        visible = int(counts[0])
        if bool((counts != visible).any()):
            raise ValueError("every sample of a batch must keep the same number of patches")
        with keeping(encoder, visible, keep.shape[1]):
            return encoder(pixel_values=images, noise=keep_first(keep))

    def encode(self, encoder, images, corruption):
        return self._vit(encoder, images, corruption).last_hidden_state

    def predict(self, images, keep):
        """Normalised images -> the decoder's patches [B, L, p*p*C] for every position."""
        out = self._vit(self.model.vit, images, keep)
        return self.model.decoder(out.last_hidden_state, out.ids_restore).logits

    def generate(self, images, corruption):
        with torch.no_grad():
            patches = self.predict(self.pixels.normalize(images), corruption)
            generated = self.pixels.denormalize(self.model.unpatchify(patches.to(images.dtype)))
        return self.paste(images, generated, corruption)

    def task_loss(self, images, corruption, targets=None):
        """HF's training loss: pixel MSE on the hidden patches (per-patch normalised targets
        with norm_pix_loss), against `targets` instead of the images when given."""
        normalize = self.pixels.normalize
        predicted = self.predict(normalize(images), corruption)
        target = self.model.patchify(normalize(images if targets is None else targets))
        if self.model.config.norm_pix_loss:
            target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        error = (predicted.float() - target.float()).square().mean(dim=-1)
        hidden = (~corruption).to(error.device, torch.float32, non_blocking=True)
        return (error * hidden).sum() / hidden.sum().clamp_min(1.0)

"""MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder. Images
are [0, 1]; they are normalised as the model reads them (`prepare`) and its
generations de-normalised before the visible patches are pasted back."""
from __future__ import annotations

from .base import PatchGridAdapter


class MAEAdapter(PatchGridAdapter):
    """MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""

    def noise_keep(self, corruption):
        return self.pixel_keep(corruption)

    def prepare(self, images):
        return self.pixels.normalize(images)

    def encode(self, encoder, images, corruption):
        return encoder(images, corruption)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        generated = self.model.generate(self.pixels.normalize(images), corruption)
        return self.paste(images, self.pixels.denormalize(generated), corruption)

    def task_loss(self, images, corruption, targets=None):
        normalize = self.pixels.normalize
        return self.model.loss(normalize(images), corruption, None if targets is None else normalize(targets))

"""MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""
from __future__ import annotations

from .base import PatchGridAdapter


class MAEAdapter(PatchGridAdapter):
    """MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""

    def noise_keep(self, corruption):
        return self.pixel_keep(corruption)

    def encode(self, encoder, images, corruption):
        return encoder(images, corruption)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        return self.model.generate(images, corruption)

    def task_loss(self, images, corruption, targets=None):
        return self.model.loss(images, corruption, targets)

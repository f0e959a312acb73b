"""MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""
from __future__ import annotations

from ..models.masks import patch_keep
from ..models import MAE
from .base import Adapter


class MAEAdapter(Adapter):
    """MAE: T drops the hidden patches, E is the ViT encoder, D the MAE decoder."""

    def __init__(self, model: MAE):
        self.model = model
        self.encoder = model.encoder
        self.image_shape = (model.in_chans, model.img_size, model.img_size)

    def draw(self, spec, batch, generator):
        return patch_keep(spec, self.model.grid, batch, generator)

    def noise_keep(self, corruption):
        return self.pixel_keep(corruption)

    def encode(self, encoder, images, corruption):
        return encoder(images, corruption)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        return self.model.generate(images, corruption)

    def task_loss(self, images, corruption, targets=None):
        return self.model.loss(images, corruption, targets)

"""MAGE: T hides tokens of the frozen tokenizer's grid, E is the token encoder, D the
token decoder. Real images are tokenized once per step and the ids shared by student
and teacher; noise is tokenized only for forget samples."""
from __future__ import annotations

from ..models.masks import patch_keep
from ..models import MAGE
from .base import Adapter


class VQAdapter(Adapter):
    """MAGE: T hides tokens, E is the token encoder over visible ids, D the token decoder."""

    frozen_prepare = True  # the tokenizer is frozen: each real image's ids are computed once

    def __init__(self, model: MAGE):
        self.model = model
        self.encoder = model.encoder
        self.image_shape = (model.in_chans, model.img_size, model.img_size)

    def draw(self, spec, batch, generator):
        return patch_keep(spec, self.model.grid, batch, generator)

    def prepare(self, images):
        return self.model.tokenize(images)

    def encode(self, encoder, ids, corruption):
        return encoder(ids, corruption)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        return self.model.generate(images, corruption.to(images.device))

    def task_loss(self, images, corruption, targets=None):
        return self.model.loss(images, corruption, targets)

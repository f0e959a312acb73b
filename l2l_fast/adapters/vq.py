"""MAGE: T hides tokens of the frozen tokenizer's grid, E is the token encoder, D the
token decoder. Real images are tokenized once per step and the ids shared by student
and teacher; noise is tokenized only for forget samples."""
from __future__ import annotations

from .base import PatchGridAdapter


class VQAdapter(PatchGridAdapter):
    """MAGE: T hides tokens, E is the token encoder over visible ids, D the token decoder."""

    frozen_prepare = True  # the tokenizer is frozen: each real image's ids are computed once

    def prepare(self, images):
        return self.model.tokenize(self.pixels.normalize(images))

    def encode(self, encoder, ids, corruption):
        return encoder(ids, corruption)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        generated = self.model.generate(self.pixels.normalize(images), corruption.to(images.device))
        return self.paste(images, self.pixels.denormalize(generated), corruption)

    def task_loss(self, images, corruption, targets=None):
        normalize = self.pixels.normalize
        return self.model.loss(normalize(images), corruption, None if targets is None else normalize(targets))

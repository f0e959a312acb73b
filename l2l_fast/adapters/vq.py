"""MAGE: T hides tokens of the frozen tokenizer's grid, E is the token encoder, D the
token decoder. Real images are tokenized once per step and the ids shared by student
and teacher; noise is tokenized only for forget samples.

The hidden tokens split as MAGE's training and the authors' unlearning forward split
them (LTH14/mage `forward_encoder`, jpmorganchase/i2i_mage): ceil(drop_ratio · L)
of them (MAGE's minimum mask ratio, 0.5) are dropped from the encoder's sequence,
chosen at random among the hidden ones, and the rest enter as [MASK]. A mask hiding
at most that many tokens (inpaint:K, box:..., random:R with R <= 0.5) drops them all
and draws nothing, exactly as before this split existed; MAGE's own masks ("mage",
ratios in [0.5, 1]) feed [MASK] tokens. `drop_ratio=None` drops every hidden token.
The split is part of the corruption, so a sample's student and teacher see the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..models.masks import patch_keep, pixel_keep
from .base import PatchGridAdapter

MAGE_DROP_RATIO = 0.5  # upstream's mask_ratio_min: tokens dropped per sample, as a fraction of L


@dataclass
class TokenCorruption:
    """Per sample: visible tokens `keep` [B, L] and the hidden ones dropped from the
    encoder's sequence, `drop` [B, L] (the other hidden ones are [MASK])."""

    keep: torch.Tensor
    drop: torch.Tensor

    def __getitem__(self, index) -> "TokenCorruption":
        return TokenCorruption(self.keep[index], self.drop[index])

    def to(self, device) -> "TokenCorruption":
        return TokenCorruption(self.keep.to(device, non_blocking=True), self.drop.to(device, non_blocking=True))


def drop_split(keep: torch.Tensor, count: Optional[int], generator: Optional[torch.Generator]) -> torch.Tensor:
    """[B, L] bool: `count` of each row's hidden tokens chosen at random (all when count is
    None or at least the hidden count; then nothing is drawn)."""
    hidden = ~keep
    num_hidden = int(hidden[0].sum()) if keep.shape[0] else 0
    if count is None or count >= num_hidden:
        return hidden.clone()
    scores = torch.rand(keep.shape, generator=generator).masked_fill(keep, math.inf)
    chosen = scores.argsort(dim=1)[:, :count]
    return torch.zeros_like(keep).scatter_(1, chosen, True)


class VQAdapter(PatchGridAdapter):
    """MAGE: T hides tokens (dropped or [MASK]), E is the token encoder, D the token decoder;
    `generate` is MAGE's decoding with `steps` iterations at `temperature`, its sampling
    noise drawn from `seed` (the same completions on every call)."""

    frozen_prepare = True  # the tokenizer is frozen: each real image's ids are computed once

    def __init__(self, model, *, drop_ratio: Optional[float] = MAGE_DROP_RATIO, steps: int = 20,
                 temperature: float = 6.0, seed: int = 0):
        super().__init__(model)
        if drop_ratio is not None and (isinstance(drop_ratio, bool) or not 0.0 < drop_ratio <= 1.0):
            raise ValueError(f"drop_ratio must be in (0, 1] or None (drop every hidden token), got {drop_ratio!r}")
        self.drop_ratio, self.steps, self.temperature, self.seed = drop_ratio, steps, temperature, seed

    def draw(self, spec, batch, generator):
        keep = patch_keep(spec, self.model.grid, batch, generator)
        count = None if self.drop_ratio is None else math.ceil(self.drop_ratio * keep.shape[1])
        return TokenCorruption(keep, drop_split(keep, count, generator))

    def fixed_targets(self, spec) -> bool:
        """A fixed mask whose hidden tokens are all dropped (no random [MASK] split)."""
        if not super().fixed_targets(spec):
            return False
        corruption = self.draw(spec, 1, torch.Generator().manual_seed(0))
        return bool(torch.equal(corruption.drop, ~corruption.keep))

    def pixel_keep(self, corruption):
        return pixel_keep(corruption.keep, self.model.grid, self.model.patch_size)

    def prepare(self, images):
        return self.model.tokenize(self.pixels.normalize(images))

    def encode(self, encoder, ids, corruption):
        return encoder(ids, corruption.keep, corruption.drop)  # masks stay on the host: see visible_ids

    def generate(self, images, corruption):
        keep = corruption.keep.to(images.device)
        generator = torch.Generator().manual_seed(self.seed)
        generated = self.model.generate(self.pixels.normalize(images), keep, self.steps, self.temperature, generator)
        return self.paste(images, self.pixels.denormalize(generated), corruption)

    def task_loss(self, images, corruption, targets=None):
        normalize = self.pixels.normalize
        return self.model.loss(normalize(images), corruption.keep, None if targets is None else normalize(targets),
                               drop=corruption.drop)

"""Canaries: a distinctive glyph planted on chosen training images, so that what a
generator learned only from those images can be seen (Varshney & Torra, 2025).

The default glyph is a checkerboard of 2-pixel cells, black and white, in rows and
columns 4..15 of a 28 x 28 image: its lower-right 8 x 8 pixels lie inside the centre
hole of `inpaint:3` (pixels 8..19), the rest stays visible. A model that learned the
glyph completes the hidden part from the visible part; one that never saw it cannot."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch


@dataclass(frozen=True)
class Glyph:
    """A `size` x `size` checkerboard of `cell`-pixel squares with its top-left at (top, left)."""

    top: int = 4
    left: int = 4
    size: int = 12
    cell: int = 2

    def pattern(self) -> torch.Tensor:
        """[size, size] of 0.0 and 1.0."""
        cells = torch.arange(self.size) // self.cell
        return ((cells[:, None] + cells[None, :]) % 2).float()

    def region(self, height: int, width: int) -> torch.Tensor:
        """[height, width] bool: the glyph's pixels."""
        if self.top < 0 or self.left < 0 or self.top + self.size > height or self.left + self.size > width:
            raise ValueError(f"canary glyph {self} does not fit a {height} x {width} image")
        inside = torch.zeros(height, width, dtype=torch.bool)
        inside[self.top:self.top + self.size, self.left:self.left + self.size] = True
        return inside

    def image(self, height: int, width: int) -> torch.Tensor:
        """[height, width]: the glyph where it is, 0 elsewhere."""
        out = torch.zeros(height, width)
        out[self.region(height, width)] = self.pattern().flatten()
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def plant(images: torch.Tensor, glyph: Glyph = Glyph()) -> torch.Tensor:
    """A copy of `images` [N, C, H, W] with the glyph painted over every channel."""
    height, width = images.shape[-2:]
    region = glyph.region(height, width)
    return torch.where(region, glyph.image(height, width), images)


def choose_canaries(candidates: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` of the `candidates` (indices) drawn without replacement from `seed`, sorted."""
    if not 0 < count <= candidates.numel():
        raise ValueError(f"canaries: need 1 to {candidates.numel()} images, got {count}")
    order = torch.randperm(candidates.numel(), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:count]].sort().values


def read_indices(path) -> list[int]:
    """Image indices from a JSON file: a list, or an object with an "indices" list (as
    `l2l-fast pretrain --canaries` writes)."""
    data = json.loads(Path(path).read_text())
    indices = data.get("indices") if isinstance(data, dict) else data
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise ValueError(f"{path}: expected a JSON list of image indices or {{\"indices\": [...]}}")
    return indices


def kept_indices(labels: torch.Tensor, exclude_classes: Sequence[int] = (),
                 exclude_indices: Sequence[int] = ()) -> torch.Tensor:
    """The indices of a labelled set left after dropping whole classes and single images."""
    count = labels.shape[0]
    bad = [i for i in exclude_indices if not 0 <= i < count]
    if bad:
        raise ValueError(f"exclude-indices: {bad[:5]} are outside the {count} images")
    keep = ~torch.isin(labels, torch.tensor(list(exclude_classes), dtype=labels.dtype))
    keep[torch.tensor(list(exclude_indices), dtype=torch.long)] = False
    if not keep.any():
        raise ValueError("exclude-classes / exclude-indices leave no image to train on")
    return keep.nonzero().flatten()

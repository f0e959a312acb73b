"""Generation for evaluation: a model's completions of T(images), batched, corruptions drawn
from a seed, and the hole errors of the demo's table. The paper's table is `evaluate`
(protocol.py)."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

import torch
from tqdm.auto import tqdm

from ..models.masks import parse_mask

COLUMNS = ("FID_R", "IS_R", "CLIP_R", "FID_F", "IS_F", "CLIP_F", "acc_R", "acc_F")
BETTER = {"FID_R": "↓", "IS_R": "↑", "CLIP_R": "↑", "FID_F": "↑", "IS_F": "↓", "CLIP_F": "↓", "acc_R": "↑", "acc_F": "↓"}


def corruptions(adapter, count: int, mask: str, seed: int, batch_size: int) -> Iterator:
    """The corruptions of `count` images in batches of `batch_size`, drawn from `seed` in order."""
    spec = parse_mask(mask)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, count, batch_size):
        yield adapter.draw(spec, min(batch_size, count - start), generator)


@torch.no_grad()
def generate(adapter, images: torch.Tensor, mask: str, *, seed: int = 0, batch_size: int = 256,
             device: Optional[torch.device] = None, progress: bool = False,
             batches: Optional[Iterable[int]] = None) -> torch.Tensor:
    """The model's completion of T(images), in batches, corruptions drawn from `seed`, clamped to
    [0, 1]: the images as they would be saved, which is what the paper's metrics read.

    `batches` (indices into `images.split(batch_size)`) completes only those batches. The
    others' corruptions are still drawn, so a run split into parts completes every image
    exactly as the whole run does."""
    device = device or next(adapter.model.parameters()).device
    chunks = images.split(batch_size)
    chosen = range(len(chunks)) if batches is None else sorted(set(batches))
    if not chosen or any(not 0 <= b < len(chunks) for b in chosen):
        raise ValueError(f"batches must name at least one of the {len(chunks)} batches of {batch_size} "
                         f"({images.shape[0]} images), got {list(chosen)}")
    was_training = adapter.model.training
    adapter.model.eval()
    out = []
    drawn = corruptions(adapter, images.shape[0], mask, seed, batch_size)
    with tqdm(total=len(chosen), desc="generate", disable=not progress) as bar:
        for index, corruption in zip(range(chosen[-1] + 1), drawn):
            if index in chosen:
                out.append(adapter.generate(chunks[index].to(device), corruption).clamp(0.0, 1.0).cpu())
                bar.update()
    adapter.model.train(was_training)
    return torch.cat(out)


def hole_errors(images: torch.Tensor, generated: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the hidden pixels (visible: [B, 1, H, W], 1 = visible)."""
    hole = (1.0 - visible).expand_as(images)
    return ((generated - images).square() * hole).sum(dim=(1, 2, 3)) / hole.sum(dim=(1, 2, 3)).clamp_min(1.0)


def visible_pixels(adapter, count: int, mask: str, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """The visible pixels of the corruptions `generate` draws for `count` images with `seed`."""
    return torch.cat([adapter.pixel_keep(c) for c in corruptions(adapter, count, mask, seed, batch_size)])

"""Corruptions (the image-to-image task T), named by strings everywhere in the API.

- "inpaint:K":  the centre K x K patches are hidden.
- "outpaint:K": only the centre K x K patches are visible.
- "random:R":   a fraction R of the patches is hidden, drawn per sample.

A corruption is a boolean patch mask `keep` of shape [B, L] (True = visible),
L = grid_h * grid_w in row-major order; every row keeps the same number of
patches so that visible tokens batch without padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

MASK_KINDS = ("inpaint", "outpaint", "random")


@dataclass(frozen=True)
class MaskSpec:
    kind: str
    size: int = 0
    ratio: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}:{self.ratio if self.kind == 'random' else self.size}"

    @property
    def deterministic(self) -> bool:
        return self.kind != "random"


def parse_mask(spec, argument: str = "mask") -> MaskSpec:
    """Parse "inpaint:K", "outpaint:K" or "random:R"; a ValueError names `argument`."""
    if isinstance(spec, MaskSpec):
        return spec
    expected = "'inpaint:K', 'outpaint:K' (K an integer >= 1) or 'random:R' (0 < R < 1)"
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{argument} must be {expected}, got {spec!r}")
    kind, _, value = spec.partition(":")
    try:
        if kind in ("inpaint", "outpaint"):
            size = int(value)
            if size >= 1:
                return MaskSpec(kind, size=size)
        elif kind == "random":
            ratio = float(value)
            if 0.0 < ratio < 1.0:
                return MaskSpec(kind, ratio=ratio)
    except ValueError:
        pass
    raise ValueError(f"{argument} must be {expected}, got {spec!r}")


def _centre_block(grid_h: int, grid_w: int, size: int) -> torch.Tensor:
    if size > min(grid_h, grid_w):
        raise ValueError(
            f"mask size {size} does not fit the {grid_h}x{grid_w} patch grid of this model"
        )
    block = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    top, left = (grid_h - size) // 2, (grid_w - size) // 2
    block[top : top + size, left : left + size] = True
    return block.flatten()


def patch_keep(
    spec: MaskSpec,
    grid: tuple[int, int],
    batch: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Boolean [batch, L] mask of visible patches for this corruption."""
    grid_h, grid_w = grid
    num_patches = grid_h * grid_w
    if spec.kind == "inpaint":
        return (~_centre_block(grid_h, grid_w, spec.size)).expand(batch, -1).clone()
    if spec.kind == "outpaint":
        return _centre_block(grid_h, grid_w, spec.size).expand(batch, -1).clone()
    num_hidden = min(max(round(spec.ratio * num_patches), 1), num_patches - 1)
    scores = torch.rand(batch, num_patches, generator=generator)
    hidden = scores.argsort(dim=1)[:, :num_hidden]
    keep = torch.ones(batch, num_patches, dtype=torch.bool)
    keep.scatter_(1, hidden, False)
    return keep


def pixel_keep(keep: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Patch mask [B, L] to a float pixel mask [B, 1, H, W] (1 = visible)."""
    grid_h, grid_w = grid
    mask = keep.reshape(-1, 1, grid_h, grid_w).float()
    return mask.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)

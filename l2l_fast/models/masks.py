"""Corruptions (the image-to-image task T), named by strings everywhere in the API.

On the model's patch (token) grid:
- "inpaint:K":      the centre K x K patches are hidden.
- "outpaint:K":     only the centre K x K patches are visible.
- "box:A":          a centre box hiding the fraction A of the grid's area (each side
                    round(sqrt(A) * grid side)); "box:area=A" is the same.
- "box:side=F":     a centre box whose sides are the fraction F of the grid's (F may be
                    written as a ratio, "box:side=4/16"). The paper's evaluation boxes:
                    MAGE side 4/16 or 8/16 of its 16 x 16 token grid, Palette half the
                    side ("box:side=1/2" = "box:0.25").
- "random:R":       a fraction R of the patches is hidden, drawn per sample.
- "mage":           MAGE's training masks: one ratio r per draw (per step, shared by the
                    whole batch, as upstream's `mask_ratio_generator.rvs(1)`) from a normal
                    of mean 0.55 and std 0.25 truncated to [0.5, 1.0]; each sample hides
                    ceil(r * L) patches chosen at random. "mage:MU,STD,LO,HI" sets the four.
At pixel resolution (families whose corruption is a pixel mask: diffusion, `adapt`):
- "hybrid":         Palette's training masks: a random box united with free-form brush
                    strokes, per sample (Palette's `random_bbox` and `brush_stroke_mask`
                    distributions, lengths scaled by min(H, W) / 256).

A patch corruption is a boolean mask `keep` of shape [B, L] (True = visible),
L = grid_h * grid_w in row-major order; every row keeps the same number of
patches so that visible tokens batch without padding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import torch

MASK_KINDS = ("inpaint", "outpaint", "box", "random", "mage", "hybrid")
MAGE_RATIO = (0.55, 0.25, 0.5, 1.0)  # mean, std, low, high of MAGE's truncated-normal mask ratio
EXPECTED = ("'inpaint:K' or 'outpaint:K' (K an integer >= 1), 'box:A' or 'box:area=A' (0 < A < 1), "
            "'box:side=F' (0 < F < 1, e.g. 4/16), 'random:R' (0 < R < 1), 'mage' or 'mage:MU,STD,LO,HI' "
            "(STD > 0, 0 <= LO < HI <= 1), or 'hybrid'")


@dataclass(frozen=True)
class MaskSpec:
    kind: str
    size: int = 0
    ratio: float = 0.0
    by: str = ""  # box: "area" or "side"
    params: tuple = ()  # mage: (mean, std, low, high)

    def __str__(self) -> str:
        if self.kind in ("inpaint", "outpaint"):
            return f"{self.kind}:{self.size}"
        if self.kind == "random":
            return f"random:{self.ratio}"
        if self.kind == "box":
            return f"box:{self.ratio}" if self.by == "area" else f"box:side={self.ratio}"
        if self.kind == "mage":
            return "mage" if self.params == MAGE_RATIO else "mage:" + ",".join(f"{p:g}" for p in self.params)
        return self.kind

    @property
    def deterministic(self) -> bool:
        """The same corruption at every draw (a fixed mask)."""
        return self.kind in ("inpaint", "outpaint", "box")

    @property
    def pixel_level(self) -> bool:
        """Drawn per pixel, not per patch: only families with a pixel corruption take it."""
        return self.kind == "hybrid"


def _fraction(text: str) -> float:
    return float(Fraction(text.strip())) if "/" in text else float(text)


def _parse(kind: str, value: str) -> Optional[MaskSpec]:
    if kind in ("inpaint", "outpaint"):
        size = int(value)
        return MaskSpec(kind, size=size) if size >= 1 else None
    if kind == "random":
        ratio = float(value)
        return MaskSpec(kind, ratio=ratio) if 0.0 < ratio < 1.0 else None
    if kind == "box":
        by, _, number = value.rpartition("=")
        by = by or "area"
        ratio = _fraction(number)
        return MaskSpec(kind, ratio=ratio, by=by) if by in ("area", "side") and 0.0 < ratio < 1.0 else None
    if kind == "mage":
        params = tuple(float(v) for v in value.split(",")) if value else MAGE_RATIO
        if len(params) == 4 and params[1] > 0 and 0.0 <= params[2] < params[3] <= 1.0:
            return MaskSpec(kind, params=params)
        return None
    if kind == "hybrid" and not value:
        return MaskSpec(kind)
    return None


def parse_mask(spec, argument: str = "mask") -> MaskSpec:
    """Parse a mask spec (see the module doc); a ValueError names `argument`."""
    if isinstance(spec, MaskSpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"{argument} must be {EXPECTED}, got {spec!r}")
    kind, _, value = spec.partition(":")
    try:
        parsed = _parse(kind, value) if kind in MASK_KINDS and (":" in spec or kind in ("mage", "hybrid")) else None
    except (ValueError, ZeroDivisionError):
        parsed = None
    if parsed is None:
        raise ValueError(f"{argument} must be {EXPECTED}, got {spec!r}")
    return parsed


def _fits(spec: MaskSpec, grid: tuple[int, int]) -> str:
    """The specs of `spec`'s kind that leave both something visible and a hole on `grid`."""
    side = min(grid)
    if spec.kind in ("inpaint", "outpaint"):
        if side < 2:
            return f"no {spec.kind} mask fits it"
        return f"{spec.kind}:1 to {spec.kind}:{side - 1} fit" if side > 2 else f"only {spec.kind}:1 fits"
    return "a smaller box fits"


def check_leaves_input(spec: MaskSpec, grid: tuple[int, int], hidden: int) -> None:
    """ValueError when a fixed mask hides every cell of `grid` (no visible input) or none (no hole)."""
    cells = grid[0] * grid[1]
    if 0 < hidden < cells:
        return
    what = "every" if hidden else "no"
    leaves = "nothing visible to fill the hole from" if hidden else "no hole to fill"
    raise ValueError(f"mask {spec} hides {what} cell of this model's {grid[0]}x{grid[1]} grid, which leaves "
                     f"{leaves}: {_fits(spec, grid)}")


def _centre_block(grid_h: int, grid_w: int, size_h: int, size_w: Optional[int] = None, spec=None) -> torch.Tensor:
    size_w = size_h if size_w is None else size_w
    if size_h > grid_h or size_w > grid_w:
        fits = f": {_fits(spec, (grid_h, grid_w))}" if spec is not None else ""
        raise ValueError(
            f"mask size {size_h}x{size_w} does not fit the {grid_h}x{grid_w} patch grid of this model{fits}"
        )
    block = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    top, left = (grid_h - size_h) // 2, (grid_w - size_w) // 2
    block[top : top + size_h, left : left + size_w] = True
    return block.flatten()


def box_sides(spec: MaskSpec, grid: tuple[int, int]) -> tuple[int, int]:
    """The sides (h, w) in grid cells of a "box" spec's hidden centre box."""
    side = math.sqrt(spec.ratio) if spec.by == "area" else spec.ratio
    sides = tuple(math.floor(side * n + 0.5) for n in grid)
    if min(sides) < 1:
        raise ValueError(f"mask {spec} hides no cell of the {grid[0]}x{grid[1]} grid of this model")
    return sides


def mage_ratio(params: tuple, generator: Optional[torch.Generator] = None) -> float:
    """One draw of a normal(mean, std) truncated to [low, high], by inverting its CDF."""
    mean, std, low, high = params
    lo, hi = (torch.tensor((bound - mean) / std, dtype=torch.float64) for bound in (low, high))
    u = torch.rand(1, generator=generator, dtype=torch.float64)[0]
    cdf = torch.special.ndtr(lo) + u * (torch.special.ndtr(hi) - torch.special.ndtr(lo))
    return float((mean + std * torch.special.ndtri(cdf)).clamp(low, high))


def _random_keep(batch: int, num_patches: int, num_hidden: int, generator) -> torch.Tensor:
    scores = torch.rand(batch, num_patches, generator=generator)
    hidden = scores.argsort(dim=1)[:, :num_hidden]
    keep = torch.ones(batch, num_patches, dtype=torch.bool)
    keep.scatter_(1, hidden, False)
    return keep


def patch_keep(
    spec: MaskSpec,
    grid: tuple[int, int],
    batch: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Boolean [batch, L] mask of visible patches for this corruption."""
    grid_h, grid_w = grid
    num_patches = grid_h * grid_w
    if spec.pixel_level:
        raise ValueError(f"mask {spec} is a pixel mask; this model hides whole cells of its "
                         f"{grid_h}x{grid_w} grid (use inpaint, outpaint, box, random or mage)")
    if spec.deterministic:
        sides = box_sides(spec, grid) if spec.kind == "box" else (spec.size, spec.size)
        block = _centre_block(grid_h, grid_w, *sides, spec=spec)
        keep = block if spec.kind == "outpaint" else ~block
        check_leaves_input(spec, grid, int((~keep).sum()))
        return keep.expand(batch, -1).clone()
    if spec.kind == "mage":
        num_hidden = min(max(math.ceil(mage_ratio(spec.params, generator) * num_patches), 1), num_patches)
        return _random_keep(batch, num_patches, num_hidden, generator)
    num_hidden = min(max(round(spec.ratio * num_patches), 1), num_patches - 1)
    return _random_keep(batch, num_patches, num_hidden, generator)


PATCH_GRIDS = (7, 8)  # grid sides tried in order by default_patch_size


def default_patch_size(image_size: int, multiple: int = 1) -> int:
    """The patch side of a pixel-space model without a patch grid of its own (the diffusion
    adapters): image_size / 7 if that is a whole multiple of `multiple`, else image_size / 8.

    7 first: the project's models on Fashion-MNIST (MAE, MAGE: 28 px, a 7 x 7 grid of 4 px)
    read every mask string on a 7 x 7 grid, so a diffusion model there hides the same pixels
    for "inpaint:3", and a multiple of 28 (56, 112 px) keeps the grid, so a mask string
    hides the same part of the picture at every such size. Sizes of the form 8·2^k (Stable
    Diffusion's 512, Palette's 256) are no multiples of 7 and get image_size / 8.
    `multiple`: a latent model's VAE factor, so that a patch is whole latent cells."""
    for grid in PATCH_GRIDS:
        if image_size % grid == 0 and (image_size // grid) % multiple == 0:
            return image_size // grid
    raise ValueError(f"image size {image_size} is not 7 or 8 patches of a multiple of {multiple} pixels; "
                     "pass patch_size=")


def pixel_keep(keep: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Patch mask [B, L] to a float pixel mask [B, 1, H, W] (1 = visible)."""
    grid_h, grid_w = grid
    mask = keep.reshape(-1, 1, grid_h, grid_w).float()
    return mask.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


def keep_pixels(spec: MaskSpec, grid: tuple[int, int], patch_size: int, batch: int,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Float pixel mask [batch, 1, H, W] (1 = visible) of any spec: pixel masks drawn at
    pixel resolution, the others on the patch grid."""
    if spec.pixel_level:
        from .brush_masks import hybrid_hole
        size = (grid[0] * patch_size, grid[1] * patch_size)
        return 1.0 - hybrid_hole(size, batch, generator)
    return pixel_keep(patch_keep(spec, grid, batch, generator), grid, patch_size)

"""Palette's "hybrid" training masks, drawn with a torch generator: a random box
united with free-form brush strokes (Yu et al., "Free-Form Image Inpainting with
Gated Convolution"), with the distributions of Palette's `random_bbox` and
`brush_stroke_mask` (data/util/mask.py) at 256 x 256, lengths scaled by
min(H, W) / 256 elsewhere.

- Box: the largest box is half the image's side; its top-left corner is drawn at
  least a margin (20 px at 256) from the border, then shrunk from the top and the
  left by up to half of 40 px each, as Palette's code does.
- Strokes: 1 to 3 polylines of 4 to 11 segments; each segment's length is a normal
  of mean r = diagonal / 8 and std r // 2, clipped to [0, 2r]; its direction
  alternates around 2π/5 within a per-stroke spread of up to 2π/15; the brush is
  12 to 39 px wide and round at the vertices. A pixel is in a stroke when its
  centre lies within half the width of a segment. (Palette's random flips are not
  applied: its code discards the flipped image.)
"""
from __future__ import annotations

import math
from typing import Optional

import torch

REFERENCE_SIZE = 256


def _randint(low: int, high: int, generator) -> int:
    """An integer in [low, high), as numpy's randint."""
    return int(torch.randint(low, max(high, low + 1), (1,), generator=generator))


def _box(size: tuple[int, int], generator) -> torch.Tensor:
    height, width = size
    scale = min(size) / REFERENCE_SIZE
    margin, delta = max(round(20 * scale), 0), round(40 * scale)
    box_h, box_w = height // 2, width // 2
    top = _randint(margin, height - margin - box_h, generator)
    left = _randint(margin, width - margin - box_w, generator)
    shrink_top, shrink_left = _randint(0, delta // 2 + 1, generator), _randint(0, delta // 2 + 1, generator)
    hole = torch.zeros(height, width, dtype=torch.bool)
    hole[top + shrink_top: top + box_h, left + shrink_left: left + box_w] = True
    return hole


def _segments_cover(points: torch.Tensor, half_width: float, size: tuple[int, int]) -> torch.Tensor:
    """Pixels whose centre is within half_width of the polyline through points [N, 2] (x, y)."""
    height, width = size
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    pixel = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2)
    start, end = points[:-1][None], points[1:][None]
    direction = end - start
    length2 = direction.square().sum(-1).clamp_min(1e-12)
    t = (((pixel - start) * direction).sum(-1) / length2).clamp(0, 1)
    distance2 = (pixel - start - t[..., None] * direction).square().sum(-1)
    return (distance2 <= half_width ** 2).any(dim=1).reshape(height, width)


def _strokes(size: tuple[int, int], generator) -> torch.Tensor:
    height, width = size
    scale = min(size) / REFERENCE_SIZE
    radius = math.sqrt(height ** 2 + width ** 2) / 8
    mean_angle, spread = 2 * math.pi / 5, 2 * math.pi / 15
    min_width = max(round(12 * scale), 1)
    max_width = max(round(40 * scale), min_width + 1)
    hole = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(_randint(1, 4, generator)):
        vertices = _randint(4, 12, generator)
        low, high = (spread * torch.rand(2, generator=generator, dtype=torch.float64)).tolist()
        angles = (mean_angle - low) + (low + high) * torch.rand(vertices, generator=generator, dtype=torch.float64)
        angles = torch.where(torch.arange(vertices) % 2 == 0, 2 * math.pi - angles, angles)
        lengths = (radius + (radius // 2) * torch.randn(vertices, generator=generator, dtype=torch.float64))
        lengths = lengths.clamp(0, 2 * radius)
        x, y = float(_randint(0, width, generator)), float(_randint(0, height, generator))
        points = [(x, y)]
        for angle, length in zip(angles.tolist(), lengths.tolist()):
            x = float(int(min(max(x + length * math.cos(angle), 0.0), width)))
            y = float(int(min(max(y + length * math.sin(angle), 0.0), height)))
            points.append((x, y))
        brush = _randint(min_width, max_width, generator)
        hole |= _segments_cover(torch.tensor(points, dtype=torch.float64), brush / 2, size)
    return hole


def hybrid_hole(size: tuple[int, int], batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Float [batch, 1, H, W]: 1 in the hole (box ∪ strokes), 0 elsewhere; one draw per sample."""
    height, width = size
    if min(size) < 8:
        raise ValueError(f"hybrid masks need images of at least 8 x 8 pixels, got {height} x {width}")
    holes = [_box(size, generator) | _strokes(size, generator) for _ in range(batch)]
    return torch.stack(holes)[:, None].float()

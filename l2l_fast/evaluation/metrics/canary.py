"""Whether a completion regenerates a planted canary glyph (l2l_fast.data.canaries): the Pearson
correlation, over the glyph's hidden pixels, between the completion (mean over channels) and the
glyph. A completion "regenerates" the canary when the correlation is at least THRESHOLD: 0.5 is
far above what a clean image's completion reaches against a checkerboard (about 0) and below what
a blurred but recognisable copy of the glyph reaches."""
from __future__ import annotations

import torch

from ...data.canaries import Glyph

THRESHOLD = 0.5


def canary_correlation(generated: torch.Tensor, visible: torch.Tensor, glyph: Glyph = Glyph()) -> torch.Tensor:
    """[B] float64: the correlation with the glyph over each image's hidden glyph pixels (nan where
    the hole does not cover any of them; 0 where the completion is flat there)."""
    height, width = generated.shape[-2:]
    region = glyph.region(height, width).double()
    target = glyph.image(height, width).double()
    weight = (1.0 - visible.double().cpu().expand(generated.shape[0], 1, height, width)[:, 0]) * region
    count = weight.flatten(1).sum(1)
    values = generated.double().cpu().mean(1)

    def centred(x, mean):
        return (x - mean[:, None, None]) * weight

    mean_x = (values * weight).flatten(1).sum(1) / count.clamp_min(1)
    mean_y = (target * weight).flatten(1).sum(1) / count.clamp_min(1)
    x, y = centred(values, mean_x), centred(target.expand_as(values), mean_y)
    covariance = (x * y).flatten(1).sum(1)
    scale = (x.square().flatten(1).sum(1) * y.square().flatten(1).sum(1)).sqrt()
    correlation = torch.where(scale > 0, covariance / scale.clamp_min(1e-300), torch.zeros_like(scale))
    return torch.where(count > 0, correlation, torch.full_like(correlation, float("nan")))


def regenerated(correlation: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """[B] float64 1.0 / 0.0: the glyph was regenerated (nan rows are left out by the caller)."""
    return (correlation >= threshold).double()

"""Metrics with no network: the error inside the hole and the structure of the completion.

For each image (pixels in [0, 1], `visible` 1 where the corruption showed the pixel):
    MSE_hole   mean squared error over the hidden pixels (all channels)
    PSNR_hole  10 log10(1 / MSE_hole): torchmetrics' PSNR (data range 1) of the hidden pixels
    SSIM       torchmetrics' SSIM (data range 1, 11x11 Gaussian window, sigma 1.5) of the completion
               with the visible pixels pasted back, so it measures the hole and its seams
A set's value is the mean over its images; images without a hidden pixel count for SSIM only.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

PIXEL_METRICS = ("MSE_hole", "PSNR_hole", "SSIM")


def pixel_errors(generated: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image [B] float64: MSE_hole and PSNR_hole (nan without a hidden pixel) and SSIM."""
    generated = generated.detach().double().cpu().clamp(0, 1)
    truth = truth.detach().double().cpu()
    visible = visible.detach().double().cpu().expand_as(truth)
    hole = 1 - visible
    count = hole.flatten(1).sum(1)
    mse = ((generated - truth).square() * hole).flatten(1).sum(1) / count
    mse = torch.where(count > 0, mse, torch.full_like(mse, float("nan")))
    completion = truth * visible + generated * hole
    ssim = structural_similarity_index_measure(completion, truth, data_range=1.0, reduction="none")
    return {"MSE_hole": mse, "PSNR_hole": 10 * torch.log10(1 / mse), "SSIM": ssim.double()}


def pixel_summary(parts: dict[str, list[torch.Tensor]]) -> dict[str, float | None]:
    """The set's means of `pixel_errors` batches (None where no image has a hole)."""
    out = {}
    for name in PIXEL_METRICS:
        values = torch.cat(parts[name])
        values = values[~values.isnan()]
        out[name] = float(values.mean()) if values.numel() else None
    return out

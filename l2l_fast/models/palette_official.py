"""Official Palette checkpoints (Janspiry/Palette-Image-to-Image-Diffusion-Models,
`module_name: guided_diffusion`) onto a PaletteUNet built with the same `unet` config.

A `*_Network.pth` (or `*_Network_ema.pth`) file holds the network's state dict:
- `denoise_fn.cond_embed.*`, `denoise_fn.input_blocks.*`, `denoise_fn.middle_block.*`
  -> `encoder.*` (same names below the prefix);
- `denoise_fn.output_blocks.*`, `denoise_fn.out.*` -> `decoder.*`;
- the noise-schedule buffers (`gammas`, `sqrt_recip_gammas`, `sqrt_recipm1_gammas`,
  `posterior_log_variance_clipped`, `posterior_mean_coef1`, `posterior_mean_coef2`)
  are derived from `beta_schedule` and skipped.
A bare UNet state dict (the same keys without `denoise_fn.`) is accepted too.
"""
from __future__ import annotations

import os
from typing import Mapping, Union

import torch

from .palette import PaletteUNet

PREFIX = "denoise_fn."
SHOWN = 30
ENCODER_PARTS = ("cond_embed", "input_blocks", "middle_block")
DECODER_PARTS = ("output_blocks", "out")
SCHEDULE_BUFFERS = frozenset({
    "gammas", "sqrt_recip_gammas", "sqrt_recipm1_gammas", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2", "betas", "alphas_cumprod",
})


def official_to_ours(key: str) -> str:
    """Our parameter name for an official key (unchanged if it is not a UNet key)."""
    name = key[len(PREFIX):] if key.startswith(PREFIX) else key
    part = name.split(".", 1)[0]
    if part in ENCODER_PARTS:
        return f"encoder.{name}"
    if part in DECODER_PARTS:
        return f"decoder.{name}"
    return key


def load_official_palette(
    model: PaletteUNet, path_or_state_dict: Union[str, os.PathLike, Mapping[str, torch.Tensor]]
) -> PaletteUNet:
    """Load official Palette weights into `model` (in place; returns it).

    Raises ValueError listing missing keys, unexpected keys and shape mismatches."""
    if isinstance(path_or_state_dict, Mapping):
        official = path_or_state_dict
    else:
        official = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        if not isinstance(official, Mapping):
            raise ValueError(f"{path_or_state_dict}: expected a state dict, got {type(official).__name__}")
    ours = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in official.items():
        if key.removeprefix(PREFIX) in SCHEDULE_BUFFERS:
            continue
        name = official_to_ours(key)
        if name in ours:
            mapped[name] = value
        else:
            unexpected.append(key)
    missing = [k for k in ours if k not in mapped]
    mismatched = [f"{k}: checkpoint {list(mapped[k].shape)}, model {list(ours[k].shape)}"
                  for k in mapped if mapped[k].shape != ours[k].shape]
    if missing or unexpected or mismatched:
        lines = ["official Palette state dict does not fit this PaletteUNet (is its config the "
                 "checkpoint's `unet` config, with module_name 'guided_diffusion'?)"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
                lines.append(f"{title} ({len(items)}): " + ", ".join(items[:SHOWN]) + more)
        raise ValueError("\n".join(lines))
    model.load_state_dict(mapped)
    return model

"""Official Palette checkpoints (Janspiry/Palette-Image-to-Image-Diffusion-Models,
`module_name: guided_diffusion`) onto a PaletteUNet built with the same `unet` config.

A release `*_Network.pth` (or `*_Network_ema.pth`) file holds the network's bare
state dict (`{"model": ...}` and
`{"state_dict": ...}` wrappers are read too); the model reads [-1, 1] pixels
(`pixels.SYMMETRIC`):
- `denoise_fn.cond_embed.*`, `denoise_fn.input_blocks.*`, `denoise_fn.middle_block.*`
  -> `encoder.*` (same names below the prefix);
- `denoise_fn.output_blocks.*`, `denoise_fn.out.*` -> `decoder.*`;
- the noise-schedule buffers (`gammas`, `sqrt_recip_gammas`, `sqrt_recipm1_gammas`,
  `posterior_log_variance_clipped`, `posterior_mean_coef1`, `posterior_mean_coef2`)
  are derived from `beta_schedule` and skipped.
A bare UNet state dict (the same keys without `denoise_fn.`) is accepted too.
"""
from __future__ import annotations

from .loading import Source, load_exact, read_state_dict
from .palette import PaletteUNet
from .pixels import SYMMETRIC

PREFIX = "denoise_fn."
ENCODER_PARTS = ("cond_embed", "input_blocks", "middle_block")
DECODER_PARTS = ("output_blocks", "out")
SCHEDULE_BUFFERS = frozenset({
    "gammas", "sqrt_recip_gammas", "sqrt_recipm1_gammas", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
})


def official_to_l2l(state: dict) -> dict:
    """Official key names -> this package's `encoder.` / `decoder.` names; other keys
    (not the UNet's) are kept as they are, so that they show up as unexpected."""
    mapped = {}
    for key, value in state.items():
        name = key.removeprefix(PREFIX)
        if name in SCHEDULE_BUFFERS:
            continue
        part = name.split(".", 1)[0]
        if part in ENCODER_PARTS:
            key = f"encoder.{name}"
        elif part in DECODER_PARTS:
            key = f"decoder.{name}"
        mapped[key] = value
    return mapped


def load_official_palette(model: PaletteUNet, source: Source) -> PaletteUNet:
    """Load an official Palette network (path or state dict) into `model`, built with
    the checkpoint's `unet` config; a ValueError lists every missing and unexpected
    key and every shape mismatch."""
    state = official_to_l2l(read_state_dict(source))
    load_exact(model, state, "official Palette checkpoint (guided_diffusion UNet)")
    model.pixels = SYMMETRIC
    return model

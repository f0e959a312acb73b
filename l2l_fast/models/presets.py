"""Model configurations: the ones the project trains itself (Fashion-MNIST), and the
paper-size ones with the shapes of the official release files (`ARCHS`, by upstream's
own names: facebookresearch/mae `models_mae.py`, LTH14/mage `models_mage.py` with its
`config/vqgan.yaml`, Janspiry/Palette `config/inpainting_places2.json`)."""
from __future__ import annotations

import copy
from typing import Optional

import torch

FASHION_MNIST_MAE = dict(
    img_size=28, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
    decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4,
)

FASHION_MNIST_MAGE = dict(
    img_size=28, embed_dim=128, depth=4, num_heads=4,
    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    tokenizer=dict(in_chans=1, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=32,
                   n_embed=256, norm_groups=8),
)

FASHION_MNIST_PALETTE = dict(
    image_size=28, in_channel=2, out_channel=1, inner_channel=32, channel_mults=[1, 2, 2], res_blocks=2,
    attn_res=[4], num_head_channels=32, dropout=0.0, norm_groups=8,
    beta_schedule={"train": {"schedule": "linear", "n_timestep": 1000, "linear_start": 1e-4, "linear_end": 0.02}},
)

# MAE at 224 x 224 with the 8-block, 512-wide decoder of every release (mae_visualize_vit_*.pth)
MAE_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
MAE_VIT_B = dict(img_size=224, in_chans=3, patch_size=16, embed_dim=768, depth=12, num_heads=12, **MAE_DECODER)
MAE_VIT_L = dict(img_size=224, in_chans=3, patch_size=16, embed_dim=1024, depth=24, num_heads=16, **MAE_DECODER)
MAE_VIT_H = dict(img_size=224, in_chans=3, patch_size=14, embed_dim=1280, depth=32, num_heads=16, **MAE_DECODER)

# MAGE at 256 x 256 over its VQGAN (vqgan_jax_strongaug.ckpt: 16 x 16 tokens, 1024 codes)
MAGE_VQGAN = dict(in_chans=3, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, z_channels=256, n_embed=1024)
MAGE_VIT_B = dict(img_size=256, tokenizer=MAGE_VQGAN, embed_dim=768, depth=12, num_heads=12,
                  decoder_embed_dim=768, decoder_depth=8, decoder_num_heads=16)
MAGE_VIT_L = dict(img_size=256, tokenizer=MAGE_VQGAN, embed_dim=1024, depth=24, num_heads=16,
                  decoder_embed_dim=1024, decoder_depth=8, decoder_num_heads=16)

# Palette inpainting on Places2 at 256 x 256 (dropout off, as every PaletteUNet here: see palette.py)
PALETTE_PLACES2 = dict(
    image_size=256, in_channel=6, out_channel=3, inner_channel=64, channel_mults=[1, 2, 4, 8], attn_res=[16],
    num_head_channels=32, res_blocks=2, dropout=0.0,
    beta_schedule={"train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 0.01},
                   "test": {"schedule": "linear", "n_timestep": 1000, "linear_start": 1e-4, "linear_end": 0.09}},
)

# arch name -> (family, constructor arguments)
ARCHS = {
    "mae_vit_base_patch16": ("mae", MAE_VIT_B),
    "mae_vit_large_patch16": ("mae", MAE_VIT_L),
    "mae_vit_huge_patch14": ("mae", MAE_VIT_H),
    "mage_vit_base_patch16": ("vq", MAGE_VIT_B),
    "mage_vit_large_patch16": ("vq", MAGE_VIT_L),
    "palette_inpainting_places2": ("diffusion", PALETTE_PLACES2),
}


def arch_config(name: str, family: Optional[str] = None) -> dict:
    """The constructor arguments of a preset (a copy); `family` checks that it is one of those."""
    if name not in ARCHS or (family is not None and ARCHS[name][0] != family):
        known = sorted(k for k, (f, _) in ARCHS.items() if family is None or f == family)
        raise ValueError(f"arch must be one of {known}, got {name!r}")
    return copy.deepcopy(ARCHS[name][1])


def build(name: str, device: Optional[torch.device] = None) -> torch.nn.Module:
    """A preset's model, randomly initialised; `device=torch.device("meta")` builds the
    shapes alone (no memory, no initialisation cost)."""
    from .families import MODEL_FAMILIES

    family, _ = ARCHS.get(name, (None, None))
    config = arch_config(name)
    with torch.device(device or "cpu"):
        return MODEL_FAMILIES[family](**config)

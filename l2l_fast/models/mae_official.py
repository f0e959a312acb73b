"""Official MAE checkpoints (facebookresearch/mae): `{"model": state_dict}` with the
keys of `models_mae.MaskedAutoencoderViT` (cls_token, pos_embed, patch_embed.proj,
blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm, mask_token,
decoder_embed, decoder_pos_embed, decoder_blocks.N.*, decoder_norm, decoder_pred).

The decoder is needed for inpainting: the release files `mae_visualize_vit_base.pth`,
`mae_visualize_vit_large.pth` and `mae_visualize_vit_large_ganloss.pth` hold it (as
`{"model": state_dict}`; files from upstream's `save_model` also hold an `args`
Namespace, read too); the `mae_pretrain_vit_*.pth` ones hold the encoder only.
The model then reads ImageNet-normalised pixels (`pixels.IMAGENET`), as upstream's demo.
"""
from __future__ import annotations

from typing import Optional

from .loading import Source, load_exact, read_state_dict
from .mae import MAE
from .pixels import IMAGENET
from .presets import ARCHS

# upstream's model names -> this package's MAE configuration (224 x 224 RGB, see presets)
OFFICIAL_MAE = {name: config for name, (family, config) in ARCHS.items() if family == "mae"}
DECODER_KEYS = ("mask_token", "decoder_")


def official_to_l2l(state: dict) -> dict:
    """Official key names -> this package's `encoder.` / `decoder.` names."""
    return {
        (f"decoder.{k}" if k.startswith(DECODER_KEYS) else f"encoder.{k}"): v for k, v in state.items()
    }


def load_official_mae(source: Source, arch: Optional[str] = None, model: Optional[MAE] = None,
                      img_size: int = 224, in_chans: int = 3) -> MAE:
    """An MAE holding an official checkpoint; give `arch` (a key of OFFICIAL_MAE) or a `model`."""
    if model is None:
        if arch not in OFFICIAL_MAE:
            raise ValueError(f"arch must be one of {sorted(OFFICIAL_MAE)} (or pass model=), got {arch!r}")
        model = MAE(**{**OFFICIAL_MAE[arch], "img_size": img_size, "in_chans": in_chans})
    state = official_to_l2l(read_state_dict(source))
    load_exact(model, state, "official MAE checkpoint")
    model.pixels = IMAGENET
    return model

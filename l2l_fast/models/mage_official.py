"""Official MAGE checkpoints (github.com/LTH14/mage, `models_mage.py`) into `MAGE`:
the release files `mage-vitb-1600.pth` / `mage-vitl-1600.pth` (`{"model": ..., "args":
Namespace}` from upstream's `save_model`) with the VQGAN `vqgan_jax_strongaug.ckpt`
(`{"state_dict": ...}`). The model then reads [0, 1] pixels, bounded (`pixels.UNIT`).

A MAGE checkpoint is `{"model": state_dict}` of `MaskedGenerativeEncoderViT`; its
VQGAN is either inside it (`vqgan.*`, when the whole module was saved) or in its own
file (`vqgan_jax_strongaug.ckpt`, `{"state_dict": ...}` or a bare state dict). With
K = codebook size (1024 officially), the official vocabulary is K + 1001 rows: K codes,
1000 class labels, [MASK] last; the unconditional "fake class" label is row K + 76.

Mapped (official -> ours):
    token_emb.word_embeddings.weight   rows [0, K), K+76, K+1000 (codes, fake class, [MASK])
                                                              -> encoder.token_emb.word_embeddings.weight
                                       rows [0, K)            -> decoder.mlm_layer.word_embeddings
                                                                 (the decoder's own copy, output_projection
                                                                 "copy"; none for "encoder")
    token_emb.position_embeddings.weight, token_emb.LayerNorm.*  -> encoder.token_emb.*
    blocks.*, norm.*                                             -> encoder.*
    decoder_embed.*, decoder_pos_embed_learned, decoder_blocks.*,
    decoder_norm.*, mlm_layer.fc.*, mlm_layer.ln.*               -> decoder.*
    mlm_layer.bias [1, 1, K+1001]      first K                -> decoder.mlm_layer.bias
    vqgan.* (or the tokenizer file's keys)                    -> tokenizer.*
Not mapped (unused by the official forward pass too): token_emb.position_ids, cls_token,
pos_embed, patch_embed.proj.*, mask_token, decoder_pos_embed, decoder_pred.*, the other
class-label rows of the word embeddings and the logit biases beyond the K codes.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import torch

from .loading import read_state_dict
from .mage import MAGE
from .pixels import UNIT

Source = Union[str, os.PathLike, dict]

UNUSED = frozenset({
    "token_emb.position_ids", "cls_token", "pos_embed", "patch_embed.proj.weight",
    "patch_embed.proj.bias", "mask_token", "decoder_pos_embed", "decoder_pred.weight",
    "decoder_pred.bias",
})
FAKE_CLASS_OFFSET = 76
EXTRA_VOCAB = 1001


def _state_dict(source: Source, name: str) -> dict:
    return read_state_dict(source, name)


def _map_transformer(official: dict, codebook_size: int, own_copy: bool, mapped: dict, origin: dict,
                     problems: dict):
    vocab = codebook_size + EXTRA_VOCAB
    for key, value in official.items():
        if key in UNUSED or key.startswith("vqgan."):
            continue
        if key in ("token_emb.word_embeddings.weight", "mlm_layer.bias"):
            rows = value.reshape(-1, value.shape[-1]) if key.endswith("weight") else value.reshape(-1)
            if rows.shape[0] != vocab:
                problems["shape"].append(f"{key}: {list(value.shape)} has {rows.shape[0]} vocabulary "
                                         f"entries, expected {vocab} for a {codebook_size}-entry codebook")
                continue
            if key == "mlm_layer.bias":
                targets = {"decoder.mlm_layer.bias": rows[:codebook_size]}
            else:
                fake = codebook_size + FAKE_CLASS_OFFSET
                targets = {"encoder.token_emb.word_embeddings.weight":
                           torch.cat([rows[:codebook_size], rows[fake:fake + 1], rows[-1:]])}
                if own_copy:
                    targets["decoder.mlm_layer.word_embeddings"] = rows[:codebook_size]
        elif key.startswith(("token_emb.", "blocks.", "norm.")):
            targets = {f"encoder.{key}": value}
        elif key.startswith(("decoder_", "mlm_layer.")):
            targets = {f"decoder.{key}": value}
        else:
            problems["unexpected"].append(key)
            continue
        mapped.update(targets)
        origin.update(dict.fromkeys(targets, key))


def load_official_mage(
    model: MAGE, path_or_state_dict: Source, tokenizer_path_or_state_dict: Optional[Source] = None
) -> MAGE:
    """Load official MAGE weights (and its VQGAN) into `model`, whose configuration must
    match (depth, widths, token grid, codebook). Raises ValueError listing the missing
    and unexpected keys and the shape mismatches otherwise; `model` is unchanged then.

    The tokenizer comes from `tokenizer_path_or_state_dict` when given, else from the
    checkpoint's `vqgan.*` keys. Paths load with `weights_only=True`: a Lightning file
    holding pickled objects besides its tensors must be re-saved as its state dict.
    """
    official = _state_dict(path_or_state_dict, "path_or_state_dict")
    if tokenizer_path_or_state_dict is not None:
        tokenizer = _state_dict(tokenizer_path_or_state_dict, "tokenizer_path_or_state_dict")
        tokenizer_name = "{}"
    else:
        tokenizer = {k[len("vqgan."):]: v for k, v in official.items() if k.startswith("vqgan.")}
        tokenizer_name = "vqgan.{}"
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    problems: dict[str, list[str]] = {"missing": [], "unexpected": [], "shape": []}
    _map_transformer(official, model.codebook_size, model.output_projection == "copy", mapped, origin, problems)
    for key, value in tokenizer.items():
        mapped[f"tokenizer.{key}"] = value
        origin[f"tokenizer.{key}"] = tokenizer_name.format(key)

    expected = model.state_dict()
    for key, value in mapped.items():
        if key not in expected:
            problems["unexpected"].append(origin[key])
        elif value.shape != expected[key].shape:
            problems["shape"].append(f"{origin[key]} -> {key}: checkpoint {list(value.shape)}, "
                                     f"model {list(expected[key].shape)}")
    problems["missing"] = [key for key in expected if key not in mapped]
    if any(problems.values()):
        lines = [f"  {kind}: {', '.join(keys)}" for kind, keys in
                 (("missing", problems["missing"]), ("unexpected", problems["unexpected"]),
                  ("shape mismatches", problems["shape"])) if keys]
        raise ValueError("official MAGE checkpoint does not match this model's configuration:\n"
                         + "\n".join(lines))
    model.load_state_dict(mapped)
    model.pixels = UNIT
    return model

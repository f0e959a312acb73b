"""Hugging Face transformers' `ViTMAEForPreTraining` (an optional extra: `pip install
".[hf]"`): reading a local model folder offline, and the key map between its weights
and this package's MAE (the same network: a ViT encoder over the visible patches and
MAE's decoder; fused qkv here, separate q/k/v projections there).

Both HF module layouts are mapped: transformers 5 (`vit.layers.N.attention.q_proj`,
`mlp.fc1`) and 4 (`vit.encoder.layer.N.attention.attention.query`, `intermediate.dense`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .mae import MAE
from .pixels import IMAGENET, Pixels

HF_CLASS = "ViTMAEForPreTraining"

# part of one transformer block -> its name in each HF layout (5.x, 4.x)
LAYER_PARTS = {
    "norm1": ("layernorm_before", "layernorm_before"),
    "norm2": ("layernorm_after", "layernorm_after"),
    "attn.proj": ("attention.o_proj", "attention.output.dense"),
    "mlp.fc1": ("mlp.fc1", "intermediate.dense"),
    "mlp.fc2": ("mlp.fc2", "output.dense"),
}
QKV = (("attention.q_proj", "attention.k_proj", "attention.v_proj"),
       ("attention.attention.query", "attention.attention.key", "attention.attention.value"))
SINGLE = {
    "encoder.cls_token": "vit.embeddings.cls_token",
    "encoder.pos_embed": "vit.embeddings.position_embeddings",
    "encoder.patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
    "encoder.patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
    "encoder.norm.weight": "vit.layernorm.weight",
    "encoder.norm.bias": "vit.layernorm.bias",
    **{f"decoder.{name}": f"decoder.{name}" for name in (
        "mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight",
        "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias")},
}


def is_hf_mae(model) -> bool:
    """Whether `model` is (a subclass of) transformers' ViTMAEForPreTraining; transformers
    is not imported."""
    return any(c.__name__ == HF_CLASS and c.__module__.startswith("transformers.") for c in type(model).__mro__)


def mae_config(hf_config) -> dict:
    """The MAE constructor arguments of an HF ViTMAEConfig; a ValueError for what MAE
    cannot express."""
    c = hf_config
    ratio = c.intermediate_size / c.hidden_size
    problems = []
    if c.hidden_act != "gelu":
        problems.append(f"hidden_act {c.hidden_act!r} (MAE uses exact 'gelu')")
    if not c.qkv_bias:
        problems.append("qkv_bias false (MAE's qkv has a bias)")
    if c.decoder_intermediate_size / c.decoder_hidden_size != ratio:
        problems.append(f"decoder MLP ratio {c.decoder_intermediate_size / c.decoder_hidden_size} differs from the "
                        f"encoder's {ratio}")
    if problems:
        raise ValueError("this ViTMAE configuration has no MAE equivalent: " + "; ".join(problems))
    return dict(img_size=c.image_size, patch_size=c.patch_size, in_chans=c.num_channels, embed_dim=c.hidden_size,
                depth=c.num_hidden_layers, num_heads=c.num_attention_heads, decoder_embed_dim=c.decoder_hidden_size,
                decoder_depth=c.decoder_num_hidden_layers, decoder_num_heads=c.decoder_num_attention_heads,
                mlp_ratio=ratio, norm_eps=c.layer_norm_eps)


def _layers(hf_state: dict) -> tuple[str, int]:
    """(encoder layer prefix, layout index) of an HF state dict."""
    if any(k.startswith("vit.layers.") for k in hf_state):
        return "vit.layers", 0
    return "vit.encoder.layer", 1


def _block_pairs(ours: str, theirs: str, layout: int):
    """(our key, HF key or (q, k, v) keys) for one block, weights and biases."""
    for kind in ("weight", "bias"):
        for part, names in LAYER_PARTS.items():
            yield f"{ours}.{part}.{kind}", f"{theirs}.{names[layout]}.{kind}"
        yield f"{ours}.attn.qkv.{kind}", tuple(f"{theirs}.{name}.{kind}" for name in QKV[layout])


def key_pairs(depth: int, decoder_depth: int, hf_state: dict) -> list:
    """[(MAE key, HF key or a (q, k, v) triple of HF keys)] for the layout `hf_state` uses."""
    prefix, layout = _layers(hf_state)
    pairs = list(SINGLE.items())
    for i in range(depth):
        pairs += _block_pairs(f"encoder.blocks.{i}", f"{prefix}.{i}", layout)
    for i in range(decoder_depth):
        pairs += _block_pairs(f"decoder.decoder_blocks.{i}", f"decoder.decoder_layers.{i}", layout)
    return pairs


def hf_to_mae_state(hf_state: dict, depth: int, decoder_depth: int) -> dict:
    out = {}
    for ours, theirs in key_pairs(depth, decoder_depth, hf_state):
        out[ours] = torch.cat([hf_state[k] for k in theirs]) if isinstance(theirs, tuple) else hf_state[theirs]
    return out


def mae_to_hf_state(mae_state: dict, depth: int, decoder_depth: int, hf_keys) -> dict:
    """The inverse map, into the layout that `hf_keys` (an HF model's state dict keys) use."""
    out = {}
    for ours, theirs in key_pairs(depth, decoder_depth, dict.fromkeys(hf_keys)):
        if isinstance(theirs, tuple):
            out.update(zip(theirs, mae_state[ours].chunk(3)))
        else:
            out[theirs] = mae_state[ours]
    return out


def to_mae(hf_model) -> MAE:
    """This package's MAE with the HF model's weights and pixel convention."""
    config = mae_config(hf_model.config)
    model = MAE(**config)
    state = hf_to_mae_state(hf_model.state_dict(), config["depth"], config["decoder_depth"])
    model.load_state_dict(state)
    model.pixels = getattr(hf_model, "pixels", IMAGENET)
    return model


def load_hf_mae(folder):
    """`ViTMAEForPreTraining` from a local folder (config.json + model.safetensors, as
    `save_pretrained` or the Hub write it), offline, in eval mode. Its pixel convention
    is the folder's preprocessor_config.json image_mean / image_std (ImageNet's if none)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: expected a Hugging Face model folder holding config.json (and "
                         "model.safetensors) of a ViTMAEForPreTraining")
    found = json.loads((folder / "config.json").read_text())
    if found.get("model_type") != "vit_mae":
        raise ValueError(f"{folder}: config.json describes model_type {found.get('model_type')!r}, "
                         "expected 'vit_mae' (ViTMAEForPreTraining)")
    try:
        from transformers import ViTMAEForPreTraining
    except ImportError as error:
        raise ImportError("Hugging Face ViTMAE needs transformers: pip install 'l2l_fast[hf]'") from error
    model = ViTMAEForPreTraining.from_pretrained(str(folder), local_files_only=True).eval()
    model.pixels = IMAGENET
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        settings = json.loads(processor.read_text())
        if settings.get("do_normalize") is False:
            model.pixels = Pixels()
        elif "image_mean" in settings and "image_std" in settings:
            model.pixels = Pixels(settings["image_mean"], settings["image_std"], bounded=True)
    return model

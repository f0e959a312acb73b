"""One way in for official checkpoints: `load_release(family, checkpoint, tokenizer, arch)`,
used by `l2l-fast import` and by run files' `model: {family, checkpoint, ...}`.

    mae      a facebookresearch/mae release file (mae_visualize_vit_{base,large}[_ganloss].pth)
    mage     an LTH14/mage release file (mage-vit{b,l}-1600.pth), with its VQGAN inside it
             (vqgan.* keys) or given as `tokenizer` (vqgan_jax_strongaug.ckpt)
    palette  a Janspiry/Palette network file (*_Network.pth)
    hf-mae   a local Hugging Face ViTMAEForPreTraining folder (config.json + model.safetensors)

`arch` names a preset of presets.ARCHS or a YAML/JSON file of the model's constructor
arguments (for sizes that are not presets). Without it: MAE takes the release file's
`args.model` or the preset whose shapes match, MAGE the preset whose shapes match,
Palette the Places2 preset.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import yaml

from . import presets
from .families import MODEL_FAMILIES
from .loading import load_release_file, read_state_dict
from .mae_official import load_official_mae
from .mage_official import load_official_mage
from .palette_official import load_official_palette

FAMILIES = ("mae", "mage", "palette", "hf-mae")
MODEL_FAMILY = {"mae": "mae", "mage": "vq", "palette": "diffusion"}
EXPECTED = {
    "mae": "an MAE checkpoint with its decoder (keys patch_embed.*, blocks.*, decoder_pred.*), such as "
           "mae_visualize_vit_base.pth",
    "mage": "a MAGE checkpoint (keys token_emb.*, blocks.*, mlm_layer.*), such as mage-vitb-1600.pth",
    "palette": "a Palette network (keys [denoise_fn.]input_blocks.*, output_blocks.*), such as 100_Network.pth",
}


def guess_family(state: dict) -> str:
    """What a state dict looks like, in words (for error messages)."""
    keys = set(state)
    if any(k.startswith("token_emb.") for k in keys):
        return "a MAGE checkpoint"
    if any(k.removeprefix("denoise_fn.").startswith("input_blocks.") for k in keys):
        return "a Palette network"
    if "decoder_pred.weight" in keys:
        return "an MAE checkpoint"
    if "patch_embed.proj.weight" in keys:
        return "an encoder-only ViT (e.g. mae_pretrain_vit_*.pth, which holds no decoder)"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "a state dict in this package's own names (load it with l2l_fast.load_model instead)"
    return f"an unknown state dict (first keys: {sorted(keys)[:4]})"


def _is(state: dict, family: str) -> bool:
    keys = set(state)
    if family == "mae":
        return "decoder_pred.weight" in keys and "patch_embed.proj.weight" in keys and not any(
            k.startswith("token_emb.") for k in keys)
    if family == "mage":
        return "token_emb.word_embeddings.weight" in keys
    return any(k.removeprefix("denoise_fn.").startswith("input_blocks.") for k in keys)


def _arch(arch, family: str) -> Optional[dict]:
    if arch is None:
        return None
    if Path(str(arch)).suffix in (".yaml", ".yml", ".json"):
        if not Path(arch).is_file():
            raise ValueError(f"arch: {arch!r} is not a file")
        config = yaml.safe_load(Path(arch).read_text())
        if not isinstance(config, dict):
            raise ValueError(f"arch: {arch} must hold a mapping of the model's constructor arguments")
        return config
    return presets.arch_config(arch, MODEL_FAMILY[family])


def _count(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


def _matching_preset(family: str, matches) -> dict:
    kind_wanted = MODEL_FAMILY[family]
    found = [config for kind, config in presets.ARCHS.values() if kind == kind_wanted and matches(config)]
    if not found:
        known = sorted(name for name, (kind, _) in presets.ARCHS.items() if kind == MODEL_FAMILY[family])
        raise ValueError(f"its shapes match no {family} preset ({known}); pass arch (--arch): a preset name or a "
                         "YAML file of the model's constructor arguments")
    return dict(found[0])


def _mae_config(state: dict, args) -> dict:
    name = getattr(args, "model", None)
    if name in presets.ARCHS and presets.ARCHS[name][0] == "mae":
        return presets.arch_config(name)
    width, patch = state["cls_token"].shape[-1], state["patch_embed.proj.weight"].shape[-1]
    depth = _count(state, "blocks.")
    config = _matching_preset("mae", lambda c: (c["embed_dim"], c["patch_size"], c["depth"]) == (width, patch, depth))
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    return {**config, "img_size": grid * patch, "in_chans": state["patch_embed.proj.weight"].shape[1]}


def _mage_config(state: dict) -> dict:
    width, depth = state["token_emb.word_embeddings.weight"].shape[-1], _count(state, "blocks.")
    return _matching_preset("mage", lambda c: (c["embed_dim"], c["depth"]) == (width, depth))


def load_release(family: str, checkpoint, tokenizer=None, arch=None):
    """The model a release file (or HF folder) holds, with its pixel convention set.
    ValueError, naming the file, for a file of another family or a MAGE without its VQGAN."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if family == "hf-mae":
        if tokenizer is not None or arch is not None:
            raise ValueError("hf-mae reads its architecture from the folder's config.json: no tokenizer or arch")
        from .hf_mae import load_hf_mae

        return load_hf_mae(checkpoint)
    if family != "mage" and tokenizer is not None:
        raise ValueError(f"tokenizer applies to family 'mage' only, not {family!r}")
    raw = load_release_file(checkpoint)
    state = read_state_dict(raw)
    args = raw.get("args") if isinstance(raw.get("args"), argparse.Namespace) else None
    if not _is(state, family):
        raise ValueError(f"{checkpoint}: expected {EXPECTED[family]}; this file holds {guess_family(state)}")
    config = _arch(arch, family)
    model_type = MODEL_FAMILIES[MODEL_FAMILY[family]]
    try:
        if family == "mae":
            model = model_type(**(config or _mae_config(state, args)))
            return load_official_mae(state, model=model)
        if family == "mage":
            if tokenizer is None and not any(k.startswith("vqgan.") for k in state):
                raise ValueError("this MAGE checkpoint holds no VQGAN (no vqgan.* keys): pass its tokenizer "
                                 "file (vqgan_jax_strongaug.ckpt) as tokenizer / --tokenizer")
            model = model_type(**(config or _mage_config(state)))
            return load_official_mage(model, state, tokenizer)
        model = model_type(**(config or presets.arch_config("palette_inpainting_places2")))
        return load_official_palette(model, state)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from error

"""Model files: `save_model` writes this package's checkpoint (a tensor file, see
l2l_fast/io.py, whose metadata holds the family and config); `load_model` is the one
way to load a model, from such a checkpoint, the shipped demo or an official release."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from ..data.assets import DEMO_MODEL
from ..training.files import read, save_tensors
from .families import MODEL_FAMILIES
from .pixels import pixels_of, split_config

ModelSpec = Union[str, os.PathLike, Mapping]


def save_model(model: torch.nn.Module, path, extra: Optional[dict] = None) -> Path:
    """The model's weights, family and config, its pixel convention in the config."""
    meta = {"family": model.family, "config": {**model.config, **pixels_of(model).config()}, **(extra or {})}
    return save_tensors(model.state_dict(), meta, path)


def load_model(spec: ModelSpec, map_location: str = "cpu") -> torch.nn.Module:
    """A model from
    - "demo": the shipped Fashion-MNIST MAE;
    - a path: a checkpoint written by `save_model` (one without a pixel convention reads
      pixels as its family always did, see pixels.py);
    - {family, checkpoint, tokenizer, arch}: an official release file (models/release.py;
      an HF ViTMAE stays one and is unlearned as one).
    """
    if isinstance(spec, Mapping):
        from .release import load_release

        return load_release(**spec).to(map_location)
    path = DEMO_MODEL if isinstance(spec, str) and spec == "demo" else spec
    tensors, meta = read(path)
    family = meta.get("family")
    if family not in MODEL_FAMILIES:
        raise ValueError(f"{path}: unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    config, pixels = split_config(meta["config"], family)
    model = MODEL_FAMILIES[family](**config)
    model.pixels = pixels
    model.load_state_dict(tensors)
    return model.to(map_location)

"""The project's file format: safetensors with a JSON config in the metadata, and the
one atomic writer (temporary file, fsync, rename, fsync of the folder) that every
file the project writes goes through. Loading never unpickles."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .mae import MAE
from .mage import MAGE
from .palette import PaletteUNet
from .pixels import pixels_of, split_config

MODEL_FAMILIES = {"mae": MAE, "vq": MAGE, "diffusion": PaletteUNet}


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """`write(temporary_path)`, then the file replaces `path` in one step: a crash leaves
    either the old file or the new one, never a part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def write_text(text: str, path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path) -> Path:
    """Tensors + JSON metadata as one safetensors file, written atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"l2l_fast": json.dumps(meta)}))


def read(path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("l2l_fast", "{}"))
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return tensors, meta


def save_model(model: torch.nn.Module, path, extra: Optional[dict] = None) -> Path:
    """The model's weights, family and config, its pixel convention in the config."""
    meta = {"family": model.family, "config": {**model.config, **pixels_of(model).config()}, **(extra or {})}
    return save_tensors(model.state_dict(), meta, path)


def load_model(path, map_location: str = "cpu") -> torch.nn.Module:
    """Build a model from a checkpoint written by `save_model`; one without a pixel
    convention reads pixels as its family always did (see pixels.py)."""
    tensors, meta = read(path)
    family = meta.get("family")
    if family not in MODEL_FAMILIES:
        raise ValueError(f"{path}: unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    config, pixels = split_config(meta["config"], family)
    model = MODEL_FAMILIES[family](**config)
    model.pixels = pixels
    model.load_state_dict(tensors)
    return model.to(map_location)

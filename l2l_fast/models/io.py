"""Checkpoints as safetensors with a JSON config in the metadata, written atomically.

Loading never unpickles: tensors come from safetensors, everything else from JSON.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import MAE, MAGE, PaletteUNet

MODEL_FAMILIES = {"mae": MAE, "vq": MAGE, "diffusion": PaletteUNet}


def atomic_save(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path) -> Path:
    """Write tensors + JSON metadata to `path` via a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"l2l_fast": json.dumps(meta)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read(path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("l2l_fast", "{}"))
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return tensors, meta


def save_model(model: torch.nn.Module, path, extra: Optional[dict] = None) -> Path:
    meta = {"family": model.family, "config": model.config, **(extra or {})}
    return atomic_save(model.state_dict(), meta, path)


def load_model(path, map_location: str = "cpu") -> torch.nn.Module:
    """Build a model from a checkpoint written by `save_model`."""
    tensors, meta = read(path)
    family = meta.get("family")
    if family not in MODEL_FAMILIES:
        raise ValueError(f"{path}: unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    model = MODEL_FAMILIES[family](**meta["config"])
    model.load_state_dict(tensors)
    return model.to(map_location)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer state dict into tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

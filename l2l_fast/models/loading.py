"""Loading official checkpoints: read safely, then insist on an exact match.

Release files are read with `torch.load(weights_only=True)`, which unpickles tensors
and plain containers only; the one other type allowed is `argparse.Namespace`, the
`args` entry that upstream `util/misc.save_model` (MAE, MAGE) stores beside the weights.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
from typing import Mapping, Union

import torch
from torch import nn

Source = Union[str, os.PathLike, Mapping[str, torch.Tensor]]


WRAPPERS = ("model", "state_dict")


def _unreadable(path, message: str) -> str:
    """torch's refusal, said without its advice to load unsafely."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (f"{path}: holds a pickled object of class {found.group(1)}, beside or instead of the weights; "
                "it is not loaded, since unpickling a class runs code: only tensors and plain containers are "
                "(re-save the weights alone, e.g. torch.save(model.state_dict(), path), from a trusted copy)")
    detail = message.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0] if "WeightsUnpickler" in message \
        else ""
    return f"{path}: not a PyTorch checkpoint, or a damaged one" + (f" ({detail})" if detail else "")


def load_release_file(path) -> dict:
    """The object a release file holds, unpickled with weights_only=True (tensors, plain
    containers and argparse.Namespace; anything else is refused)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            found = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(_unreadable(path, str(error))) from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise ValueError(f"{path}: not a PyTorch checkpoint, or a damaged one (truncated or corrupt): "
                         f"{str(error).split('. ')[0]}") from None
    if not isinstance(found, Mapping):
        raise ValueError(f"{path}: expected a checkpoint holding a dict, got {type(found).__name__}")
    return dict(found)


def read_state_dict(source: Source, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A state dict from a path or a mapping: `{"model": state_dict, ...}` (upstream's
    `save_model`, with or without `args`), `{"state_dict": ...}` (Lightning) or a bare
    state dict."""
    if isinstance(source, Mapping):
        state = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        state = load_release_file(source)
    else:
        raise TypeError(f"{name} must be a path or a state dict, got {type(source).__name__}")
    for wrapper in WRAPPERS:
        if isinstance(state.get(wrapper), Mapping):
            return dict(state[wrapper])
    return state


def load_exact(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Load `state` into `model`, raising a ValueError listing every missing and
    unexpected key and every shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        lines = [f"{what} does not match this model's configuration:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                lines.append(f"  {title}: {shown}")
        raise ValueError("\n".join(lines))
    model.load_state_dict(state)
    return model

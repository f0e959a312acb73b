"""Loading official checkpoints: read safely, then insist on an exact match."""
from __future__ import annotations

import os
from typing import Mapping, Union

import torch
from torch import nn

Source = Union[str, os.PathLike, Mapping[str, torch.Tensor]]


def read_state_dict(source: Source, key: str = "model") -> dict[str, torch.Tensor]:
    """A state dict from a path (torch.load with weights_only=True) or a mapping;
    unwraps `{key: state_dict}` as the official checkpoints store it."""
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        state = torch.load(source, map_location="cpu", weights_only=True)
    if key in state and isinstance(state[key], Mapping):
        state = dict(state[key])
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

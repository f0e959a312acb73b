"""Adapters for the built-in generator families, and `adapt` for any model."""
from __future__ import annotations

from typing import Optional

from torch import nn

from ..models import MAE, MAGE, PaletteUNet
from ..models.hf_mae import is_hf_mae
from .base import Adapter, Embedding
from .custom import CustomAdapter, adapt
from .diffusers import adapt_diffusers, is_diffusers_object
from .diffusion import DiffusionAdapter
from .hf_mae import HFMAEAdapter
from .mae import MAEAdapter
from .vq import VQAdapter

# (model class, its adapter), checked in order.
BUILT_IN = [(MAE, MAEAdapter), (MAGE, VQAdapter), (PaletteUNet, DiffusionAdapter)]

__all__ = ["Adapter", "Embedding", "MAEAdapter", "HFMAEAdapter", "VQAdapter", "DiffusionAdapter", "CustomAdapter",
           "adapt", "adapt_diffusers", "adapter_for"]


def adapter_for(model: nn.Module, adapter: Optional[Adapter] = None) -> Adapter:
    if adapter is not None:
        return adapter
    if is_diffusers_object(model):
        return adapt_diffusers(model)
    for model_type, adapter_type in BUILT_IN:
        if isinstance(model, model_type):
            return adapter_type(model)
    if is_hf_mae(model):  # recognised by class name: transformers stays an optional extra
        return HFMAEAdapter(model)
    known = ", ".join([m.__name__ for m, _ in BUILT_IN] + ["transformers' ViTMAEForPreTraining"])
    raise TypeError(
        f"model: no built-in adapter for {type(model).__name__}; pass adapter=l2l_fast.adapt(...) "
        f"(built-in models: {known})"
    )

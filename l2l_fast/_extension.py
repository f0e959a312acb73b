"""Loads the compiled operators (l2l_fast._C) and the Triton kernels, if present."""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

import torch

try:
    from . import _C  # noqa: F401  (registers the C++ operators)

    HAS_C = True
except ImportError as error:
    HAS_C = False
    reason = "not built" if importlib.util.find_spec("l2l_fast._C") is None else str(error)
    warnings.warn(
        f"l2l_fast: the compiled extension l2l_fast._C is not available ({reason}); "
        "using the plain-PyTorch reference operators. Build it with "
        "`pip install --no-build-isolation .`.",
        RuntimeWarning,
        stacklevel=2,
    )

HAS_CUDA_KERNELS = HAS_C and torch._C._dispatch_has_kernel_for_dispatch_key(
    "l2l_fast::encoder_distance", "CUDA"
)


def _load_triton():
    if os.environ.get("L2L_FAST_DISABLE_TRITON"):
        return None
    try:
        return importlib.import_module("l2l_fast.kernels")
    except ImportError:
        return None


triton_kernels = _load_triton()


def backends() -> dict[str, bool]:
    """Which compiled backends this installation can use."""
    return {"cpu": HAS_C, "cuda": HAS_CUDA_KERNELS, "triton": triton_kernels is not None}

"""Which implementation runs an operator: 'cpu' (C++), 'cuda' (CUDA C++),
'triton', or 'reference' (plain PyTorch). L2L_FAST_BACKEND forces one."""
from __future__ import annotations

import os
from typing import Optional

import torch

from .._extension import HAS_C, HAS_CUDA_KERNELS, triton_kernels

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")
BACKEND_ENV = "L2L_FAST_BACKEND"

# (backend asked for, device type, raw L2L_FAST_BACKEND) -> concrete backend.
_resolved: dict[tuple[str, str, Optional[str]], str] = {}


@torch.compiler.assume_constant_result
def _forced_backend() -> Optional[str]:
    return os.environ.get(BACKEND_ENV)


def _triton_runs_on(device_type: str) -> bool:
    return device_type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def available(backend: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend == "cpu":
        return HAS_C and device.type == "cpu"
    if backend == "cuda":
        return HAS_CUDA_KERNELS and device.type == "cuda"
    if backend == "triton":
        return triton_kernels is not None and _triton_runs_on(device.type)
    return False


def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend for tensors on `device`, worked out once per
    (backend, device type, value of L2L_FAST_BACKEND)."""
    key = (backend, device.type, _forced_backend())
    chosen = _resolved.get(key)
    if chosen is None:
        chosen = _resolved[key] = _resolve(*key)
    return chosen


def _resolve(backend: str, device_type: str, forced: Optional[str]) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = (forced or "").strip().lower() or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {forced!r}")
    device = torch.device(device_type)
    if backend == "auto":
        if device_type == "cuda":
            order = ("cuda", "triton", "reference")
        elif device_type == "cpu":
            order = ("cpu", "reference")
        else:
            order = ("reference",)
        return next(b for b in order if available(b, device))
    if not available(backend, device):
        raise ValueError(
            f"backend {backend!r} is not available for {device_type} tensors "
            f"(built: C++ {HAS_C}, CUDA {HAS_CUDA_KERNELS}, Triton {triton_kernels is not None})"
        )
    return backend

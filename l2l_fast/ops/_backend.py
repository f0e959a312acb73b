"""Which implementation runs an operator: 'cpu' (C++), 'cuda' (CUDA C++),
'triton', or 'reference' (plain PyTorch). L2L_FAST_BACKEND forces one."""
from __future__ import annotations

import os

import torch

from .._extension import HAS_C, HAS_CUDA_KERNELS, triton_kernels

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")
BACKEND_ENV = "L2L_FAST_BACKEND"


@torch.compiler.assume_constant_result
def _forced_backend() -> str:
    return os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"


def _triton_runs_on(device: torch.device) -> bool:
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def available(backend: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend == "cpu":
        return HAS_C and device.type == "cpu"
    if backend == "cuda":
        return HAS_CUDA_KERNELS and device.type == "cuda"
    if backend == "triton":
        return triton_kernels is not None and _triton_runs_on(device)
    return False


def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend for tensors on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = _forced_backend()
        if backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            order = ("cuda", "triton", "reference")
        elif device.type == "cpu":
            order = ("cpu", "reference")
        else:
            order = ("reference",)
        return next(b for b in order if available(b, device))
    if not available(backend, device):
        raise ValueError(
            f"backend {backend!r} is not available for {device.type} tensors "
            f"(built: C++ {HAS_C}, CUDA {HAS_CUDA_KERNELS}, Triton {triton_kernels is not None})"
        )
    return backend

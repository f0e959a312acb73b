"""Argument checks shared by every backend, so that all raise the same errors."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
DISTANCES = ("mse", "l2")
STATS = ("batch", "sample", "channel", "standard")


def check_float_tensor(value, name: str, op: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, bfloat16 or float16, got {value.dtype}")


def check_pair(student, target, op: str, suffix: str = "") -> None:
    s_name, t_name = f"student{suffix}", f"target{suffix}"
    check_float_tensor(student, s_name, op)
    check_float_tensor(target, t_name, op)
    if target.dtype != student.dtype:
        raise TypeError(f"{op}: {t_name} must have {s_name}'s dtype {student.dtype}, got {target.dtype}")
    if target.device != student.device:
        raise ValueError(f"{op}: {t_name} is on {target.device} but {s_name} is on {student.device}")
    if target.shape != student.shape:
        raise ValueError(
            f"{op}: {t_name} must have {s_name}'s shape {list(student.shape)}, got {list(target.shape)}"
        )
    if student.dim() == 0 or student.numel() == 0:
        raise ValueError(f"{op}: {s_name} must be a non-empty batch [B, ...], got shape {list(student.shape)}")
    if target.requires_grad:
        raise ValueError(f"{op}: {t_name} must not require grad (detach the teacher's output)")


def check_weight(weight, batch: int, device: torch.device, op: str) -> None:
    if weight is None:
        return
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"{op}: weight must be a floating-point tensor [B] or None")
    if weight.shape != (batch,):
        raise ValueError(f"{op}: weight must have shape [{batch}] (one per sample), got {list(weight.shape)}")
    if weight.device != device:
        raise ValueError(f"{op}: weight is on {weight.device} but student is on {device}")
    if weight.requires_grad:
        raise ValueError(f"{op}: weight must not require grad (the loss is differentiable in student only)")


def check_choice(value, name: str, choices, op: str) -> None:
    if value not in choices:
        raise ValueError(f"{op}: {name} must be one of {choices}, got {value!r}")

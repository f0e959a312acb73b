"""Triton kernels of l2l_fast, shipped as ``l2l_fast.kernels``.

Importing this package registers the forward operators
``torch.ops.l2l_fast.{encoder_distance,encoder_distance_multi,scale_rows,gaussian_target}_triton``.
It raises ImportError where triton is not installed.
"""
import triton  # noqa: F401  (fail early with ImportError when triton is missing)

from .encoder_distance import encoder_distance_forward, encoder_distance_multi_forward, scale_rows
from .gaussian_target import gaussian_target

__all__ = [
    "encoder_distance_forward",
    "encoder_distance_multi_forward",
    "gaussian_target",
    "scale_rows",
]

"""The public fused operators. Each has four implementations behind one name:
plain PyTorch (reference), C++ CPU, CUDA C++ and Triton; `backend=` picks one."""
from ._backend import BACKEND_ENV, BACKENDS
from ._checks import DISTANCES, STATS
from .encoder_distance import encoder_distance, encoder_distance_multi
from .gaussian_target import gaussian_target

__all__ = ["encoder_distance", "encoder_distance_multi", "gaussian_target", "BACKENDS", "BACKEND_ENV", "DISTANCES",
           "STATS"]

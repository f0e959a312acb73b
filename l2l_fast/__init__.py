"""l2l_fast: fast machine unlearning for image-to-image generative models."""
from ._extension import backends
from .adapters import Adapter, adapt
from .unlearning.recipe import NonFiniteLossError, unlearn

__all__ = ["unlearn", "adapt", "backends", "Adapter", "NonFiniteLossError"]
__version__ = "0.1.0"

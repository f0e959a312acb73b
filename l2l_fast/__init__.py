"""l2l_fast: fast machine unlearning for image-to-image generative models."""
from ._extension import backends
from .adapters import Adapter, adapt, adapt_diffusers
from .models.io import load_model
from .training.monitor import NonFiniteLossError
from .unlearning.config import UnlearnConfig
from .unlearning.recipe import UnlearnRecipe, unlearn

__all__ = ["unlearn", "UnlearnConfig", "UnlearnRecipe", "load_model", "adapt", "adapt_diffusers", "backends", "Adapter",
           "NonFiniteLossError"]
__version__ = "0.1.0"

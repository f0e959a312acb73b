"""Generators. Models know nothing of unlearning."""
from .mae import MAE
from .mage import MAGE
from .vq import VQTokenizer

__all__ = ["MAE"]
__all__ += ["MAGE", "VQTokenizer"]

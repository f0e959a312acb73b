"""Generators. Models know nothing of unlearning."""
from .mae import MAE
from .palette import PaletteUNet
from .mage import MAGE
from .mage_official import load_official_mage
from .vq import VQTokenizer

__all__ = ["MAE"]
__all__ += ["PaletteUNet"]
__all__ += ["MAGE", "VQTokenizer", "load_official_mage"]

"""Generators, their presets, official loaders and the project's checkpoint format
(loading any model: `l2l_fast.load_model`). Models know nothing of unlearning."""
from .io import save_model
from .mae import MAE
from .mae_official import load_official_mae
from .mage import MAGE
from .mage_official import load_official_mage
from .palette import PaletteUNet
from .palette_official import load_official_palette
from .vq import VQTokenizer
from .hf_mae import load_hf_mae
from .pixels import Pixels
from .release import load_release

__all__ = ["MAE", "MAGE", "VQTokenizer", "PaletteUNet", "load_official_mae", "load_official_mage",
           "load_official_palette", "save_model", "load_release", "load_hf_mae", "Pixels"]

"""The model families a checkpoint of this package names: family -> model class."""
from .mae import MAE
from .mage import MAGE
from .palette import PaletteUNet

MODEL_FAMILIES = {"mae": MAE, "vq": MAGE, "diffusion": PaletteUNet}

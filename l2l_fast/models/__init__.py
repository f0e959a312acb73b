"""Generators. Models know nothing of unlearning."""
from .mae import MAE

__all__ = ["MAE"]

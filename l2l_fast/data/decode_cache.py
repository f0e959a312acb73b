"""Decoded images kept for the rest of the run (and, on disk, for later runs).

One mapping holds a stamp per sample, (file size, mtime in ns; 0 = empty), then the
samples' uint8 pixels [N, C, H, W]:

- "memory": an anonymous shared mapping, made before the loader's worker processes
  start (they are forked and write into the same pages);
- "disk": `<cache_dir>/decoded-<key>.u8`, memory-mapped by every worker and every
  torchrun process of the machine. The file is created at its full size under a
  temporary name and linked into place in one step (a process never sees a part of
  it); the key hashes the image size, the channels, the decoder's settings and the
  list of file paths, so a set with other files or sizes gets its own file.

An entry is used only while its stamp matches the file's current size and mtime: a
file changed after it was cached is decoded again. Pixels are written before the
stamp, so a reader never takes a half-written entry for a whole one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)
MODES = ("auto", "memory", "disk", "off")
MEMORY_FRACTION = 0.25  # "auto" keeps a set in memory while it fits this fraction of the machine's RAM
HEADER = 4096
MAGIC = b"l2l-fast decoded images v1\n"


def cache_key(paths: Sequence[Path], shape: tuple[int, int, int], draft: bool) -> str:
    record = {"shape": list(shape), "draft": draft, "paths": [str(Path(p).absolute()) for p in paths]}
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:24]


def _layout(count: int, shape: tuple[int, int, int]) -> tuple[int, int]:
    """(offset of the pixels, total bytes)."""
    pixels = HEADER + 16 * count
    pixels += -pixels % 4096
    return pixels, pixels + count * int(np.prod(shape))


class DecodeCache:
    def __init__(self, buffer, count: int, shape: tuple[int, int, int], path: Optional[Path] = None):
        self.count, self.shape, self.path = count, tuple(shape), path
        offset, _ = _layout(count, self.shape)
        self._buffer = buffer
        self.stamps = np.ndarray((count, 2), np.int64, buffer, offset=HEADER)
        self.pixels = np.ndarray((count, *self.shape), np.uint8, buffer, offset=offset)

    @classmethod
    def memory(cls, count: int, shape: tuple[int, int, int]) -> "DecodeCache":
        return cls(mmap.mmap(-1, _layout(count, shape)[1]), count, shape)

    @classmethod
    def disk(cls, cache_dir, key: str, count: int, shape: tuple[int, int, int]) -> "DecodeCache":
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"decoded-{key}.u8"
        header = _header(count, shape)
        _, total = _layout(count, shape)
        if not _matches(path, header, total):
            _create(path, header, total)
        with open(path, "r+b") as handle:
            buffer = mmap.mmap(handle.fileno(), total)
        return cls(buffer, count, shape, path)

    def get(self, index: int, stamp: tuple[int, int]) -> Optional[np.ndarray]:
        if self.stamps[index, 0] == stamp[0] and self.stamps[index, 1] == stamp[1]:
            return self.pixels[index].copy()
        return None

    def put(self, index: int, stamp: tuple[int, int], pixels: np.ndarray) -> None:
        self.stamps[index, 0] = 0
        self.pixels[index] = pixels
        self.stamps[index, 1] = stamp[1]
        self.stamps[index, 0] = stamp[0]

    def filled(self) -> int:
        return int((self.stamps[:, 0] > 0).sum())

    def __reduce__(self):
        if self.path is None:
            raise TypeError("a memory decode cache is shared with forked worker processes only; use "
                            "decode_cache='disk' where workers are spawned")
        return _reopen, (self.path, self.count, self.shape)


def _reopen(path: Path, count: int, shape) -> DecodeCache:
    _, total = _layout(count, tuple(shape))
    with open(path, "r+b") as handle:
        return DecodeCache(mmap.mmap(handle.fileno(), total), count, tuple(shape), path)


def _header(count: int, shape) -> bytes:
    return MAGIC + json.dumps({"count": count, "shape": list(shape)}).encode() + b"\n"


def _matches(path: Path, header: bytes, total: int) -> bool:
    try:
        if path.stat().st_size != total:
            return False
        with open(path, "rb") as handle:
            return handle.read(len(header)) == header
    except OSError:
        return False


def _create(path: Path, header: bytes, total: int) -> None:
    """The empty cache file at `path`, whole or not at all; another process creating the
    same file at the same time is fine (the first one linked in is kept)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "r+b") as handle:
            handle.write(header)
            handle.truncate(total)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if not _matches(path, header, total):  # a stale file of another layout: replace it
                log.warning("replacing the decode cache %s (another layout)", path)
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_mode(mode: str, count: int, shape, cache_dir) -> str:
    """The mode "auto" stands for: disk with a cache_dir, memory while the set fits
    MEMORY_FRACTION of RAM, else off."""
    if mode not in MODES:
        raise ValueError(f"decode_cache must be one of {MODES}, got {mode!r}")
    if mode == "disk" and cache_dir is None:
        raise ValueError("decode_cache='disk' needs cache_dir, the folder for the cache files")
    if mode != "auto":
        return mode
    if cache_dir is not None:
        return "disk"
    needed = count * int(np.prod(shape))
    if needed <= MEMORY_FRACTION * memory_bytes():
        return "memory"
    log.warning("decode_cache: %d images need %.1f GB, above %.0f%% of this machine's memory; not caching "
                "(set cache_dir for a disk cache)", count, needed / 1e9, 100 * MEMORY_FRACTION)
    return "off"

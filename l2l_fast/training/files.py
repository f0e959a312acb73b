"""The project's files: the one atomic writer (temporary file, fsync, rename, fsync of
the folder) that every file the project writes goes through, and the tensor file
(safetensors with a JSON config in the metadata). Reading never unpickles.

Nothing here knows a model: models, training and evaluation all write through it."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """`write(temporary_path)`, then the file replaces `path` in one step: a crash leaves
    either the old file or the new one, never a part of it. The temporary file sits next
    to `path` as `.NAME.*.tmp` (a writer that picks the format from the name must be
    told it, e.g. savefig(format=))."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def write_text(text: str, path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(figure, path, **options) -> Path:
    """A matplotlib figure, its format from `path`'s suffix (`options` go to savefig)."""
    path = Path(path)
    kind = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format=kind, **options))


def save_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path) -> Path:
    """Tensors + JSON metadata as one safetensors file, written atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"l2l_fast": json.dumps(meta)}))


def read(path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a file written by `save_tensors`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("l2l_fast", "{}"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, json.JSONDecodeError) as error:
        raise ValueError(_not_a_tensor_file(path, error)) from None
    return tensors, meta


def _not_a_tensor_file(path: Path, error: Exception) -> str:
    """What a file that safetensors cannot read holds, as far as its first bytes tell."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"PK" or head[:1] == b"\x80":  # torch.save's zip archive, or a bare pickle
        return (f"{path}: holds a PyTorch pickle (torch.save), not a checkpoint written by l2l-fast; read a "
                "release file with `l2l-fast import` (or a run file's model: {family, checkpoint})")
    return f"{path}: not a checkpoint written by l2l-fast (a safetensors file), or a damaged one ({error})"

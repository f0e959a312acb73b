"""Per-sample results computed once in a run, where they cannot change.

- cache_targets: the teacher's embedding of each retain sample, valid only when a
  sample's corruption never changes (a fixed mask such as "inpaint:K"): then
  E_0(T(x)) is the same at every step, and the teacher runs only on what it has not
  seen (the first epoch) and on the forget samples' noise.
- the frozen preprocessing of each real image (an adapter with `frozen_prepare`,
  VQ: its token ids): the images never change during a run, so the tokenizer runs
  on each real image once, and afterwards only on the forget samples' noise.

The retain-target cache is on unless turned off (`cache_targets=False`) wherever a
sample's target cannot change; it lives on the GPU while it takes at most
DEVICE_FRACTION of the GPU's memory, else in pinned host memory (each first-epoch store
then waits for its copy).

A cached row equals the uncached one up to the teacher's rounding, not bit for bit:
it was computed in another batch, and CPU kernels (ATen's flash attention for small
head dims, GEMMs of a few rows) round differently with the batch's size and with which
thread takes a row. So that a resumed run repeats the straight one bit for bit, run
checkpoints keep every cached row (`save_rows`/`load_rows`): a checkpoint's folder
holds, per rank, the rows filled since the previous checkpoint, and a resume loads
those of the steps up to its own.

Indices are dataset indices on the host; nothing here waits for the GPU.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..models.io import read, save_tensors

DEVICE_FRACTION = 0.25


class SampleCache:
    def __init__(self, size: int, device_fraction: float = DEVICE_FRACTION):
        self.size, self.device_fraction = size, device_fraction
        self.values = None
        self.filled = torch.zeros(size, dtype=torch.bool)
        self.unsaved: list[torch.Tensor] = []  # indices stored since the last save_rows

    def missing(self, index: torch.Tensor) -> torch.Tensor:
        """Positions in `index` (on the host) whose value is not cached yet."""
        return (~self.filled[index]).nonzero().flatten()

    def store(self, index: torch.Tensor, values: torch.Tensor) -> None:
        if not isinstance(values, torch.Tensor):
            raise TypeError("a sample cache holds one tensor per sample, not a list of maps "
                            "(cache_targets needs an encoder returning one tensor)")
        if self.values is None:
            self.values, self.home = self._allocate(values), values.device
        self.values[_on(index, self.values)] = values.detach().to(self.values.device)
        self.filled[index] = True
        self.unsaved.append(index.cpu())

    def _allocate(self, values: torch.Tensor) -> torch.Tensor:
        shape = (self.size, *values.shape[1:])
        if values.device.type == "cuda":
            needed = shape[0] * values[0].numel() * values.element_size()
            if needed > self.device_fraction * torch.cuda.mem_get_info(values.device)[1]:
                return torch.empty(shape, dtype=values.dtype, pin_memory=True)  # lookups copy it back
        return values.new_empty(shape)

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """The values of `index`, on the device of the values stored."""
        return self.values[_on(index, self.values)].to(self.home, non_blocking=True)


ROWS_FILE = "cached-rows-step-{step:08d}-rank-{rank:05d}.safetensors"
_ROWS_NAME = re.compile(r"^cached-rows-step-(\d{8})-rank-(\d{5})\.safetensors$")


def _rows_files(directory: Path, rank: int) -> dict[int, Path]:
    found = (_ROWS_NAME.match(p.name) for p in directory.iterdir()) if directory.is_dir() else ()
    return {int(m.group(1)): directory / m.group(0) for m in found if m and int(m.group(2)) == rank}


def save_rows(directory, step: int, rank: int, caches: dict[str, SampleCache]) -> None:
    """This rank's rows cached since the last save, as the file of checkpoint `step`
    (none when nothing new was cached). Written before the checkpoint that needs it."""
    tensors = {}
    for name, cache in caches.items():
        if cache.unsaved:
            index = torch.cat(cache.unsaved)
            tensors[f"{name}.index"], tensors[f"{name}.values"] = index, cache.values[_on(index, cache.values)]
    if tensors:
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_tensors(tensors, {"step": step}, Path(directory) / ROWS_FILE.format(step=step, rank=rank))
    for cache in caches.values():
        cache.unsaved.clear()


def load_rows(directory, step: int, rank: int, caches: dict[str, SampleCache], device: torch.device) -> int:
    """Fill `caches` with this rank's rows of the checkpoints up to `step`, as the run had
    them then; files of later steps (a run killed after writing them, or another run) are
    deleted. The rows loaded count as unsaved (a resume may checkpoint into another folder).
    Returns their number."""
    loaded = 0
    for file_step, path in sorted(_rows_files(Path(directory), rank).items()):
        if file_step > step:
            path.unlink(missing_ok=True)
            continue
        tensors, _ = read(path)
        for name, cache in caches.items():
            if f"{name}.index" in tensors:
                cache.store(tensors[f"{name}.index"], tensors[f"{name}.values"].to(device))
                loaded += tensors[f"{name}.index"].numel()
    return loaded


def _on(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.to(like.device, non_blocking=True)


def targets_cacheable(adapter, teacher, spec, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the teacher's embedding is one tensor (what a SampleCache holds): so for
    the MAE and VQ families; for other models, probed (`probe_embedding`)."""
    from ..adapters.mae import MAEAdapter
    from ..adapters.vq import VQAdapter

    if isinstance(adapter, (MAEAdapter, VQAdapter)):
        return True
    return isinstance(probe_embedding(adapter, teacher, spec, device, dtype), torch.Tensor)


def probe_embedding(adapter, teacher, spec, device: torch.device, dtype: torch.dtype):
    """The teacher's embedding of one image of zeros, run as the step runs it (autocast to
    `dtype`), with a corruption from a generator of its own."""
    probe = torch.zeros(1, *adapter.image_shape, device=device)
    corruption = adapter.draw(spec, 1, torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
        return adapter.encode(teacher, adapter.prepare(probe), corruption)


def cached_prepare(cache: SampleCache, adapter, images: torch.Tensor, index: torch.Tensor):
    """adapter.prepare(images), each dataset sample's computed once."""
    missing = cache.missing(index)
    if missing.numel():
        cache.store(index[missing], adapter.prepare(images[_on(missing, images)]))
    return cache.lookup(index)

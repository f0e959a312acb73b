"""The images of each step, assembled off the critical path.

The main process draws every step's plan (the sample indices and the corruption) in
step order from the run's seeded generator, exactly as it would without workers; the
images of file-based sets (FileImages) are decoded in `torch.utils.data.DataLoader`
worker processes, `prefetch` steps ahead, pinned when the step runs on a GPU and copied
without blocking. Workers only decode: the order, and so the result, does not depend
on their number. Image tensors are indexed in the main process as before; other
datasets are read there too unless `num_workers` is given (they may keep state).

Files found unreadable are replaced inside the workers (FileImages.read); the feed
counts them, logs each once, and raises BadFilesError when a set has more than
`max_bad_fraction` of them.
"""
from __future__ import annotations

import collections
import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .folders import FileImages, to_float

log = logging.getLogger(__name__)
MAX_WORKERS = 8


class BadFilesError(ValueError):
    """More unreadable files in a set than the run allows."""


@dataclass
class Plan:
    """One step's draws, for this process's shard of the global batch."""

    step: int
    index: dict[str, torch.Tensor]  # set name -> dataset indices
    corruption: Any
    state: Optional[dict] = None  # the generator and samplers right after these draws (runs that checkpoint)


def default_workers() -> int:
    """min(8, available cores - 1), the cores shared among torchrun's processes on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_WORKERS, cores - 1))


class _StepImages(torch.utils.data.Dataset):
    """Keys (set name, index) of the file-based sets -> what FileImages.read gives."""

    def __init__(self, sets: dict[str, Any]):
        self.sets = sets

    def __getitem__(self, key):
        name, index = key
        data = self.sets[name]
        if isinstance(data, FileImages):
            return name, data.read(index)
        item = data[index]
        return name, (item[0] if isinstance(item, (tuple, list)) else item)


def _collate(items) -> dict:
    """Per set: the images stacked (in key order); the decodes and the bad samples found."""
    images, bad, decoded = collections.defaultdict(list), collections.defaultdict(list), 0
    for name, found in items:
        if isinstance(found, tuple):  # FileImages.Read
            images[name].append(found.pixels)
            bad[name] += found.bad
            decoded += found.decoded
        else:
            images[name].append(found)
    return {"images": {k: torch.stack(v) for k, v in images.items()}, "bad": dict(bad), "decoded": decoded}


class _Keys:
    """The DataLoader's batch sampler: draws the next step's plan when the loader asks."""

    def __init__(self, feed: "StepFeed"):
        self.feed = feed

    def __iter__(self):
        feed = self.feed
        for step in range(feed.start, feed.steps):
            plan = feed.draw(step)
            feed.plans.append(plan)
            yield [(name, int(i)) for name in feed.loaded for i in plan.index[name]]


class StepFeed:
    """`next()` gives (plan, {set name: images on `device`, float in [0, 1]}) step by step.

    sources: set name -> the ImageSource; draw(step) -> Plan; max_bad_fraction: the
    fraction of a set's files allowed to be unreadable."""

    def __init__(self, sources: dict, draw: Callable[[int], Plan], *, start: int, steps: int,
                 device: torch.device, num_workers: Optional[int], prefetch: int, max_bad_fraction: float):
        self.sources, self.draw, self.start, self.steps, self.device = sources, draw, start, steps, device
        self.max_bad_fraction = max_bad_fraction
        self.loaded = [name for name, s in sources.items() if not isinstance(s.data, torch.Tensor)]
        self.bad: dict[str, dict[int, str]] = {name: {} for name in sources}
        self.decoded = 0  # images decoded so far (not taken from a decode cache), all workers
        self.plans: collections.deque[Plan] = collections.deque()
        files = any(isinstance(sources[name].data, FileImages) for name in self.loaded)
        self.num_workers = num_workers if num_workers is not None else (default_workers() if files else 0)
        self._iterator = None
        if self.loaded:
            pin = device.type == "cuda"
            # forked workers share a memory decode cache (spawned ones could not be given it)
            forked = "fork" if self.num_workers and "fork" in multiprocessing.get_all_start_methods() else None
            loader = torch.utils.data.DataLoader(
                _StepImages({name: sources[name].data for name in self.loaded}), batch_sampler=_Keys(self),
                num_workers=self.num_workers, collate_fn=_collate, pin_memory=pin, multiprocessing_context=forked,
                prefetch_factor=max(1, math.ceil(prefetch / self.num_workers)) if self.num_workers else None,
            )
            self._iterator = iter(loader)
        self._next_step = start

    def next(self) -> tuple[Plan, dict[str, torch.Tensor]]:
        if self._iterator is None:
            plan = self.draw(self._next_step)
            batch = {"images": {}, "bad": {}, "decoded": 0}
        else:
            batch = next(self._iterator)
            plan = self.plans.popleft()
        self._next_step = plan.step + 1
        self._account(batch)
        images = {}
        for name, source in self.sources.items():
            if name in batch["images"]:
                images[name] = _on_device(batch["images"][name], self.device)
            else:
                images[name] = _to_device(source.batch(plan.index[name]), self.device)
        return plan, images

    def _account(self, batch: dict) -> None:
        self.decoded += batch["decoded"]
        for name, found in batch["bad"].items():
            data, known = self.sources[name].data, self.bad[name]
            for index in found:
                if index not in known:
                    known[index] = str(data.paths[index])
                    log.warning("%s: %s is unreadable or gone; skipped for the rest of the run (%d bad so far)",
                                name, known[index], len(known))
            if len(known) > self.max_bad_fraction * len(data):
                first = ", ".join(known[i] for i in sorted(known)[:5])
                raise BadFilesError(f"{name}: {len(known)} of {len(data)} image files are unreadable or gone, more "
                                    f"than max_bad_fraction={self.max_bad_fraction}; first: {first}")

    @property
    def bad_count(self) -> int:
        return sum(len(v) for v in self.bad.values())

    def close(self) -> None:
        if self._iterator is not None and hasattr(self._iterator, "_shutdown_workers"):
            self._iterator._shutdown_workers()
        self._iterator = None


def _on_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader batch (pinned on GPU runs) on `device`, float in [0, 1]."""
    images = images.to(device, non_blocking=True)
    return to_float(images) if images.dtype == torch.uint8 else images.float()


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device`; to a GPU through pinned memory, without waiting for it."""
    if device.type != "cuda" or images.device.type == "cuda":
        return images.to(device)
    return images.pin_memory().to(device, non_blocking=True)

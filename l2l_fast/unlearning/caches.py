"""Per-sample results computed once in a run, where they cannot change.

- cache_targets: the teacher's embedding of each retain sample, valid only when a
  sample's corruption never changes (a fixed mask such as "inpaint:K"): then
  E_0(T(x)) is the same at every step, and the teacher runs only on what it has not
  seen (the first epoch) and on the forget samples' noise.
- the frozen preprocessing of each real image (an adapter with `frozen_prepare`,
  VQ: its token ids): the images never change during a run, so the tokenizer runs
  on each real image once, and afterwards only on the forget samples' noise.

Indices are dataset indices on the host; nothing here waits for the GPU.
"""
from __future__ import annotations

import torch


class SampleCache:
    def __init__(self, size: int):
        self.size = size
        self.values = None
        self.filled = torch.zeros(size, dtype=torch.bool)

    def missing(self, index: torch.Tensor) -> torch.Tensor:
        """Positions in `index` (on the host) whose value is not cached yet."""
        return (~self.filled[index]).nonzero().flatten()

    def store(self, index: torch.Tensor, values: torch.Tensor) -> None:
        if not isinstance(values, torch.Tensor):
            raise TypeError("a sample cache holds one tensor per sample, not a list of maps "
                            "(cache_targets needs an encoder returning one tensor)")
        if self.values is None:
            self.values = values.new_empty((self.size, *values.shape[1:]))
        self.values[_on(index, self.values)] = values.detach()
        self.filled[index] = True

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.values[_on(index, self.values)]


def _on(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.to(like.device, non_blocking=True)


def cached_prepare(cache: SampleCache, adapter, images: torch.Tensor, index: torch.Tensor):
    """adapter.prepare(images), each dataset sample's computed once."""
    missing = cache.missing(index)
    if missing.numel():
        cache.store(index[missing], adapter.prepare(images[_on(missing, images)]))
    return cache.lookup(index)

"""cache_targets: the teacher's embedding of each retain sample, computed once.

Valid only when a sample's corruption never changes (a fixed mask such as
"inpaint:K", no augmentation): then E_0(T(x)) of a retain image is the same at
every step, and the teacher runs only on what it has not seen (the first epoch)
and on the forget samples' noise.
"""
from __future__ import annotations

import torch


class TargetCache:
    def __init__(self, size: int):
        self.size = size
        self.values = None
        self.filled = torch.zeros(size, dtype=torch.bool)

    def missing(self, index: torch.Tensor) -> torch.Tensor:
        """Boolean mask over `index`: rows whose target is not cached yet."""
        return ~self.filled[index.cpu()]

    def store(self, index: torch.Tensor, targets: torch.Tensor) -> None:
        if not isinstance(targets, torch.Tensor):
            raise TypeError("cache_targets supports encoders returning one tensor, not a list of maps")
        if self.values is None:
            self.values = targets.new_empty((self.size, *targets.shape[1:]))
        self.values[index.to(self.values.device)] = targets.detach()
        self.filled[index.cpu()] = True

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.values[index.to(self.values.device)]

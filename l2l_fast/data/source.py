"""Image sources for unlearning: an image tensor [N, C, H, W] or a map-style
dataset yielding images or (image, label) pairs, drawn in seeded epochs."""
from __future__ import annotations

import torch


class ImageSource:
    def __init__(self, data, name: str):
        self.name = name
        if isinstance(data, torch.Tensor):
            if data.dim() != 4:
                raise ValueError(f"{name} must be an image tensor [N, C, H, W], got shape {list(data.shape)}")
            if not data.is_floating_point():
                raise TypeError(f"{name} images must be floating point, got {data.dtype}")
        elif not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
            raise TypeError(
                f"{name} must be an image tensor [N, C, H, W] or a map-style dataset, "
                f"got {type(data).__name__}"
            )
        if len(data) == 0:
            raise ValueError(f"{name} is empty: give at least one image")
        self.data = data
        # file-based sets know their shape: no file is decoded to learn it
        self.image_shape = tuple(getattr(data, "image_shape", None) or self._item(0).shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"{name} items must be images [C, H, W], got shape {list(self.image_shape)}")

    def __len__(self) -> int:
        return len(self.data)

    def _item(self, index: int) -> torch.Tensor:
        item = self.data[index]
        if isinstance(item, (tuple, list)):
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{self.name}[{index}] must be a tensor image, got {type(item).__name__}")
        return item

    def labels(self, indices: torch.Tensor):
        """The labels of these items when the set yields (image, label) pairs, else None."""
        if isinstance(self.data, torch.Tensor):
            return None
        items = [self.data[int(i)] for i in indices]
        if not all(isinstance(item, (tuple, list)) and len(item) > 1 for item in items):
            return None
        labels = torch.tensor([int(item[1]) for item in items])
        return None if bool((labels < 0).all()) else labels  # ImageFiles: -1, no class

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if isinstance(self.data, torch.Tensor):
            return self.data[indices]
        return torch.stack([self._item(int(i)) for i in indices]).float()


class EpochSampler:
    """Batches of indices from successive seeded permutations (each sample once per epoch)."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator):
        self.size, self.batch_size, self.generator = size, batch_size, generator
        self._order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while self._order.numel() < self.batch_size:
            self._order = torch.cat([self._order, torch.randperm(self.size, generator=self.generator)])
        batch, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return batch

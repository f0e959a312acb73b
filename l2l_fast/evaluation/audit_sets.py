"""The image sets of an audit file (`l2l-fast audit`): images of Fashion-MNIST (or the demo's
subset of it) chosen by split, classes, indices and count."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..data.canaries import read_indices
from ..training.options import check_keys, check_options, choice, described, docs, fail, number, option, options

DATASETS = ("fashion-mnist", "demo")


@described("a list of image indices, a JSON file of them (a canaries file too), or None")
def _indices(name: str, value):
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        fail(name, f"must be a list of image indices or a JSON file of them, got {value!r}")
    return list(value)


@described("a list of class indices, or None (every class)")
def _classes(name: str, value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, int) and 0 <= c < 10 for c in value):
        fail(name, f"must be a list of Fashion-MNIST classes in [0, 10), got {value!r}")
    return list(value)


@dataclass(frozen=True)
class AuditSet:
    """Images of one split: those at `indices` (all if None), of `classes` (all if None), the first `count`."""

    split: str = option("test", choice(("train", "test")), "the split the images come from")
    classes: Optional[list[int]] = option(None, _classes, "keep only these classes")
    indices: Union[None, str, list[int]] = option(None, _indices, "keep only these images (indices into the split)")
    count: Optional[int] = option(None, number(1, integer=True, optional=True), "keep the first N")
    where: str = "set"

    def __post_init__(self):
        check_options(self, f"{self.where}.")

    @classmethod
    def docs(cls) -> dict[str, str]:
        return docs(cls)

    @classmethod
    def from_dict(cls, given, where: str) -> "AuditSet":
        """From a file's mapping; errors name `where` (forget, nonmembers) and the key."""
        if not isinstance(given, dict):
            fail(where, f"must be a mapping of {[f.name for f in options(cls)]}, got {given!r}")
        check_keys(where, given, [f.name for f in options(cls)])
        return cls(**given, where=where)


def load_audit_set(spec: AuditSet, dataset: str = "fashion-mnist", root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) the spec names, in the split's order."""
    if dataset == "demo":
        from ..data.assets import load_demo_images

        images, labels = load_demo_images(spec.split)
    else:
        from ..data import fashion_mnist

        images, labels = fashion_mnist(spec.split, root=root)
    chosen = torch.arange(images.shape[0])
    if spec.indices is not None:
        wanted = read_indices(spec.indices) if isinstance(spec.indices, str) else spec.indices
        outside = [i for i in wanted if not 0 <= i < images.shape[0]]
        if outside:
            raise ValueError(f"{spec.where}.indices: {outside[:5]} are outside the {images.shape[0]} "
                             f"{spec.split} images")
        chosen = torch.tensor(sorted(set(wanted)), dtype=torch.long)
    if spec.classes is not None:
        chosen = chosen[torch.isin(labels[chosen], torch.tensor(spec.classes))]
    if spec.count is not None:
        chosen = chosen[:spec.count]
    return images[chosen], labels[chosen]

"""Split a labelled image set into forget / retain / proxy subsets by class."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch


@dataclass
class ClassSplit:
    """The forget, retain and (optional) proxy sets of a class split: (images, labels)
    pairs for an image tensor (split_by_class), ClassFolders datasets for class folders
    (class_split_folders); either goes to `unlearn` as it is."""

    forget: Any
    retain: Any
    proxy: Optional[Any] = None


def check_disjoint(forget: Sequence, retain: Sequence, proxy: Sequence = ()) -> None:
    """ValueError unless there is a class to forget and none of them is also kept."""
    if not forget:
        raise ValueError("forget: give at least one class to forget")
    for other, name in ((retain, "retain"), (proxy, "proxy")):
        overlap = sorted(set(forget) & set(other), key=str)
        if overlap:
            raise ValueError(f"{name}: classes {overlap} are also in forget")


def first_per_class(labels: torch.Tensor, classes: Iterable[int], count: Optional[int] = None) -> torch.Tensor:
    """Indices of the first `count` samples (all if None) of each class, class by class."""
    return torch.cat([(labels == c).nonzero().flatten()[:count] for c in classes])


def _subset(images, labels, classes, limit, name):
    index = first_per_class(labels, classes, limit).sort().values
    if index.numel() == 0:
        raise ValueError(f"{name}: no images of classes {list(classes)} in this set")
    return images[index], labels[index]


def split_by_class(
    images: torch.Tensor,
    labels: torch.Tensor,
    forget: Sequence[int],
    retain: Sequence[int],
    proxy: Iterable[int] = (),
    per_class: Optional[int] = None,
) -> ClassSplit:
    """Subsets by class lists, in dataset order; `per_class` keeps the first N of each class."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images ({images.shape[0]}) and labels ({labels.shape[0]}) differ in length")
    forget, retain, proxy = list(forget), list(retain), list(proxy)
    check_disjoint(forget, retain, proxy)
    return ClassSplit(
        forget=_subset(images, labels, forget, per_class, "forget"),
        retain=_subset(images, labels, retain, per_class, "retain"),
        proxy=_subset(images, labels, proxy, per_class, "proxy") if proxy else None,
    )

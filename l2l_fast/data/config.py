"""DataConfig: the `data:` section of run files and eval files, every option with its default,
its check and its doc; `labelled()` reads the built-in datasets."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from ..training import options
from ..training.options import check_options, choice, described, fail, option, path
from .assets import load_demo_images
from .fashion_mnist import CLASSES as FASHION_CLASSES, fashion_mnist
from .folders import read_class_list
from .splits import check_disjoint

log = logging.getLogger(__name__)
DATASETS = ("fashion-mnist", "demo", "folders")
SPLITS = ("train", "test")
# the options each dataset reads besides forget, retain, forget_indices and per_class
DATASET_KEYS = {"fashion-mnist": {"root", "split"}, "demo": {"split"},
                "folders": {"root", "class_list", "image_size", "forget_files"}}


@described("a non-empty list of class indices (or folder names for folders), or None")
def _classes(name: str, value):
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        fail(name, f"must be a non-empty list of classes, got {value!r}")
    return value


@described("a positive integer or None")
def _positive(name: str, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        fail(name, f"must be a positive integer, got {value!r}")
    return value


@described("a non-empty list of sample indices (integers >= 0), or None")
def _indices(name: str, value):
    if value is not None and (not isinstance(value, list) or not value or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)):
        fail(name, f"must be a non-empty list of sample indices (integers >= 0), got {value!r}")
    return value


@dataclass(frozen=True)
class DataConfig:
    """Which images to forget and to keep; a file's `data:` section (option names `data.X`)."""

    dataset: str = option("fashion-mnist", choice(DATASETS),
                          "fashion-mnist (IDX files), demo (the images shipped with the package) or folders "
                          "(class folders, ImageNet layout)")
    root: Optional[str] = option(None, path("folder", exists=True),
                                 "IDX folder (fashion-mnist; default Debian's) or class-folder root (folders)")
    split: str = option("train", choice(SPLITS), "fashion-mnist / demo: the split read (eval files: test)")
    class_list: Optional[str] = option(None, path("file", exists=True),
                                       "folders: a file with one class folder name per line")
    image_size: Optional[int] = option(None, _positive, "folders: the side images are resized to (default the "
                                                         "model's)")
    forget: Optional[list[Union[int, str]]] = option(None, _classes,
                                                     "classes to forget (indices, or folder names for folders)")
    retain: Optional[list[Union[int, str]]] = option(None, _classes,
                                                     "classes to keep: real retain classes or a proxy set's",
                                                     required=True)
    per_class: Optional[int] = option(None, _positive, "the first N images of each class (default all)")
    forget_indices: Optional[list[int]] = option(None, _indices, "individual samples to forget instead of classes")
    forget_files: Optional[str] = option(None, path("file", exists=True),
                                         "folders: a file listing the images to forget (one path per line)")

    def __post_init__(self):
        check_options(self, "data.")
        ignored = sorted(f.name for f in options.options(self)
                         if f.name in set().union(*DATASET_KEYS.values()) - DATASET_KEYS[self.dataset]
                         and getattr(self, f.name) != f.default)
        if ignored:
            fail("data", f"has keys {ignored} that dataset {self.dataset!r} does not read")
        folders = self.dataset == "folders"
        if folders and (not self.root or not self.class_list):
            fail("data", "with dataset 'folders' needs root and class_list")
        for key in ("forget", "retain"):
            for item in getattr(self, key) or ():
                if isinstance(item, bool) or not (isinstance(item, int) or (folders and isinstance(item, str))):
                    kinds = "class indices or folder names" if folders else "class indices"
                    fail(f"data.{key}", f"must list {kinds}, got {item!r}")
        if self.retain is None:
            fail("data.retain", "is required: the classes to keep (real or proxy)")
        chosen = [k for k in ("forget", "forget_indices", "forget_files") if getattr(self, k) is not None]
        if len(chosen) != 1:
            fail("data", "needs exactly one of forget (classes), forget_indices (samples) and "
                         f"forget_files (a file list), got {chosen or 'none'}")
        if self.forget is not None:
            try:
                check_disjoint(self.forget, self.retain)
            except ValueError as error:
                raise ValueError(f"data.{error}: a class cannot be forgotten and kept") from error

    @classmethod
    def from_dict(cls, given: Any) -> "DataConfig":
        """From a file's `data:` section; unknown keys are an error."""
        return options.from_mapping(cls, given, "data")

    def recorded(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def labelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the split of a built-in dataset (fashion-mnist or demo)."""
        if self.dataset == "demo":
            return load_demo_images(self.split)
        if self.dataset == "fashion-mnist":
            return fashion_mnist(self.split, root=self.root)
        raise ValueError(f"data.dataset {self.dataset!r} is read as class folders, not as one tensor")

    def class_names(self, classes) -> list[str]:
        """The names of `classes` (indices or folder names): Fashion-MNIST's, or the class list's."""
        if self.dataset == "folders":
            listed = read_class_list(self.class_list) if self.class_list else None
            return [c if isinstance(c, str) or listed is None else listed[c] for c in classes]
        return [FASHION_CLASSES[c] for c in classes]

    def warn_short_classes(self, counts: dict) -> None:
        """A per_class above what a class holds (class -> its images) is a warning naming the class."""
        for name, count in counts.items():
            if self.per_class is not None and count < self.per_class:
                log.warning("data.per_class %d is above the %d images of class %s: all %d are used",
                            self.per_class, count, name, count)

    @classmethod
    def docs(cls) -> dict[str, str]:
        """{option: its doc, default and check}."""
        return options.docs(cls)

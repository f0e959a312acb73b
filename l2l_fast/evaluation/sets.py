"""The forget ("F") and retain ("R") sets of an evaluation, built from a DataConfig, and the
image shape the models take, read from their checkpoints and checked against the data."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

import torch
from safetensors import SafetensorError, safe_open

from ..data.config import DataConfig
from ..data.folders import ClassFolders, read_class_list

FASHION_SHAPE = (1, 28, 28)


def digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class EvalSet:
    """The real images of one set, as a tensor or a dataset of (image, label) items.

    Labels are the classifier's class indices (`label_map` maps a dataset's own labels)."""

    key: str
    fingerprint: str
    images: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    dataset: Optional[torch.utils.data.Dataset] = None
    label_map: Optional[torch.Tensor] = None
    bad_files: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.dataset)

    def batches(self, batch_size: int, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.images is not None:
            yield from zip(self.images.split(batch_size), self.labels.split(batch_size))
            return
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
        for images, labels in loader:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            yield images.float(), (self.label_map[labels] if self.label_map is not None else labels)


def tensor_set(key: str, images: torch.Tensor, labels: torch.Tensor, classes=None, per_class: Optional[int] = None,
               fingerprint: Optional[str] = None) -> EvalSet:
    """The images of `classes`, class by class in that order (the first `per_class` of each);
    classes None: all the images, in their order."""
    if classes is not None:
        index = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in classes])
        if index.numel() == 0:
            raise ValueError(f"no images of classes {list(classes)} in this set")
        images, labels = images[index], labels[index]
    if fingerprint is None:  # the content: real features kept on disk are reused for the same images only
        content = hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes())
        content.update(labels.detach().cpu().contiguous().numpy().tobytes())
        fingerprint = f"tensors-{key}-{content.hexdigest()[:16]}"
    return EvalSet(key, fingerprint, images=images, labels=labels)


def model_image_shape(path) -> tuple[int, int, int]:
    """(C, H, W) a checkpoint's model takes, read from its metadata (the model is built on
    the meta device: no weights are loaded)."""
    from ..adapters import adapter_for
    from ..models.io import MODEL_FAMILIES
    from ..models.pixels import split_config

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("l2l_fast", "{}"))
    family = meta.get("family")
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    config, _ = split_config(meta["config"], family)
    with torch.device("meta"):
        model = MODEL_FAMILIES[family](**config)
    return tuple(adapter_for(model).image_shape)


def image_shape(models: Mapping[str, Any], data: DataConfig) -> tuple[int, int, int]:
    """The one image shape of the checkpoints `models` (row name -> path), checked against the data."""
    shapes = {}
    for name, path in models.items():
        try:
            shapes[name] = model_image_shape(path)
        except (ValueError, OSError, KeyError, TypeError, SafetensorError) as error:
            raise ValueError(f"models.{name}: {str(path)!r} cannot be read: {error}") from error
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise ValueError(f"models must all take one image shape (C x H x W), got {listed}")
    shape = next(iter(shapes.values()))
    name = next(iter(shapes))
    if data.dataset != "folders" and shape != FASHION_SHAPE:
        raise ValueError(f"models.{name} takes {'x'.join(map(str, shape))} images but "
                         f"data.dataset {data.dataset!r} gives 1x28x28")
    if data.dataset == "folders" and data.image_size is not None and data.image_size != shape[1]:
        raise ValueError(f"data.image_size {data.image_size} does not fit models.{name}, "
                         f"which takes {'x'.join(map(str, shape))} images")
    return shape


def build_sets(data: DataConfig, shape, *, classifier_classes: Optional[str] = None,
               max_bad_fraction: float = 0.01) -> list[EvalSet]:
    """[forget set, retain set] of `data`'s classes, as images of `shape` (C, H, W); class folders
    are labelled with the classifier's class indices (its class list, default data.class_list)."""
    recorded = data.recorded()
    try:
        if data.dataset != "folders":
            images, labels = data.labelled()
            return [tensor_set(key, images, labels, getattr(data, name), data.per_class,
                               digest([recorded, key, name]))
                    for key, name in (("F", "forget"), ("R", "retain"))]
        names = read_class_list(data.class_list)
        outputs = read_class_list(classifier_classes) if classifier_classes else names
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"data: {error}") from error
    sets = []
    for key, name in (("F", "forget"), ("R", "retain")):
        classes = [names[c] if isinstance(c, int) else c for c in getattr(data, name)]
        try:
            dataset = ClassFolders(data.root, classes, image_size=shape[1], channels=shape[0],
                                   per_class=data.per_class, verify=True)
        except (ValueError, FileNotFoundError) as error:
            raise ValueError(f"data.{name}: {error}") from error
        bad = len(dataset.bad_files)
        if bad > max_bad_fraction * (bad + len(dataset)):
            raise ValueError(f"data.{name}: {bad} of {bad + len(dataset)} images are unreadable, "
                             f"more than max_bad_fraction={max_bad_fraction} (first: {dataset.bad_files[0]})")
        label_map = torch.tensor([outputs.index(c) if c in outputs else -1 for c in classes])
        files = [str(p) for p, _ in dataset.samples]
        sets.append(EvalSet(key, digest([recorded, key, shape, files]), dataset=dataset, label_map=label_map,
                            bad_files=[str(p) for p in dataset.bad_files]))
    return sets

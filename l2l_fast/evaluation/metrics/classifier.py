"""A small CNN for 28x28 grey images (Fashion-MNIST): logits for IS and accuracy,
penultimate features for FID and CLIP-style similarity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...data.assets import FASHION_CLASSIFIER
from ...training.files import read, save_tensors
from ...training.loop import train_loop
from ._features import Images, rows


def _block(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


class FashionClassifier(nn.Module):
    """conv-BN-ReLU ×3 at widths w, 2w, 4w with pooling, then a `feature_dim` layer and a linear head."""

    family = "classifier"

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.config = {"in_chans": in_chans, "num_classes": num_classes, "width": width, "feature_dim": feature_dim}
        self.body = nn.Sequential(
            *_block(in_chans, width), nn.MaxPool2d(2),
            *_block(width, 2 * width), nn.MaxPool2d(2),
            *_block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(3),
            nn.Flatten(), nn.Linear(36 * width, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N, feature_dim] of images [N, in_chans, H, W] in [0, 1]."""
        channels = self.config["in_chans"]
        if x.ndim != 4 or x.shape[1] != channels or min(x.shape[-2:]) < 4:
            raise ValueError(f"expected images [N, {channels}, H >= 4, W >= 4], got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Features(nn.Module):
    """A classifier's `features` as a module, to pass as the feature network of FID or similarity."""

    def __init__(self, classifier: FashionClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def _check_labels(images: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None) -> None:
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype != torch.int64:
        raise ValueError(
            f"labels must be int64 [N] matching images [N, ...]: got {labels.dtype} {tuple(labels.shape)} "
            f"for images {tuple(images.shape)}"
        )
    if num_classes is not None and labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def train_classifier(
    model: FashionClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    flip: bool = True,
    progress: bool = True,
) -> list[float]:
    """Cross-entropy training with AdamW, warm-up + cosine lr and (with `flip`) random
    horizontal flips; batches drawn from a generator seeded with `seed`. Returns the losses."""
    _check_labels(images, labels, model.config["num_classes"])
    device = next(model.parameters()).device

    def step_loss(step: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(images.shape[0], (batch_size,), generator=generator)
        x, y = images[index], labels[index]
        if flip:
            mirrored = torch.rand(batch_size, generator=generator) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        return F.cross_entropy(model(x.to(device)), y.to(device))

    return train_loop(model, step_loss, steps=steps, lr=lr, seed=seed, progress=progress, desc="classifier")


def predictions(classifier: nn.Module, images: Images, *, batch_size: int = 512) -> torch.Tensor:
    """argmax of the classifier's logits, int64 [N] on the CPU."""
    return rows(classifier, images, batch_size, "classifier").argmax(dim=1)


def per_class_accuracy(
    classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512
) -> dict[int, float]:
    """{class: fraction of that class's images predicted as it}, for each class in `labels`."""
    _check_labels(images, labels)
    labels = labels.cpu()
    correct = predictions(classifier, images, batch_size=batch_size) == labels
    return {c: float(correct[labels == c].double().mean()) for c in labels.unique().tolist()}


def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512) -> float:
    _check_labels(images, labels)
    return float((predictions(classifier, images, batch_size=batch_size) == labels.cpu()).double().mean())


def save_classifier(model: FashionClassifier, path, extra: Optional[dict[str, Any]] = None) -> Path:
    meta = {"family": model.family, "config": model.config, **(extra or {})}
    return save_tensors(model.state_dict(), meta, path)


def load_classifier(path=FASHION_CLASSIFIER, map_location: str = "cpu") -> FashionClassifier:
    """A classifier saved by `save_classifier` (by default the packaged Fashion-MNIST one), in eval mode."""
    tensors, meta = read(path)
    if meta.get("family") != FashionClassifier.family:
        raise ValueError(f"{path}: not a classifier checkpoint (family {meta.get('family')!r})")
    model = FashionClassifier(**meta["config"])
    model.load_state_dict(tensors)
    return model.to(map_location).eval()

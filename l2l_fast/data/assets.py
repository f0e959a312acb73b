"""The files shipped in l2l_fast/assets (the demo MAE, the demo's Fashion-MNIST subset, the
Fashion-MNIST evaluation classifier), the settings the demo runs with and the writer of the demo's
images file."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..training.files import atomic_write
from .fashion_mnist import fashion_mnist
from .splits import first_per_class


def asset(name: str) -> Path:
    return Path(str(resources.files("l2l_fast") / "assets" / name))


DEMO_MODEL = asset("mae_fashion_mnist.safetensors")  # l2l_fast.load_model("demo")
DEMO_IMAGES = asset("fashion_mnist_demo.npz")  # the first 300 train / 100 test images of each class
FASHION_CLASSIFIER = asset("fashion_classifier.safetensors")


def load_demo_images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, 1, 28, 28] in [0, 1], labels [N]) of the demo's "train" or "test" split."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    with np.load(DEMO_IMAGES, allow_pickle=False) as data:
        images = torch.from_numpy(data[f"{split}_images"]).float().div_(255.0).unsqueeze(1)
        labels = torch.from_numpy(data[f"{split}_labels"]).long()
    return images, labels


@dataclass(frozen=True)
class DemoSettings:
    """What the demo does by default (and what `l2l-fast demo`'s flags default to). lr and
    alpha: the MAE's setting chosen in benchmarks/results/quality_tuning_mae."""

    forget_classes: tuple[int, ...] = (0, 1)
    mask: str = "inpaint:3"  # the centre 12 x 12 pixels of 28 x 28 (3 x 3 of the MAE's 7 x 7 grid of 4-px patches)
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    alpha: float = 0.5
    seed: int = 0
    out: str = "l2l_fast_demo"


DEMO = DemoSettings()


def export_demo_images(path: Path, root=None, train_per_class: int = 300, test_per_class: int = 100) -> Path:
    """Write the first N images of each class of both splits as a compressed npz."""
    arrays = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        images, labels = fashion_mnist(split, root=root)
        index = first_per_class(labels, range(10), count)
        arrays[f"{split}_images"] = (images[index, 0] * 255).round().to(torch.uint8).numpy()
        arrays[f"{split}_labels"] = labels[index].numpy().astype(np.uint8)

    def write(tmp):
        with open(tmp, "wb") as handle:  # a file object: savez appends .npz to a name without it
            np.savez_compressed(handle, **arrays)

    return atomic_write(path, write)

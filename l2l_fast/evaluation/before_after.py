"""Before and after unlearning, per class, as the demos show it: the mean hole error of each class, the
table of their ratios (with the forgotten class a moved retain class looks most like) and the grid of
original, input, before and after."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..data import FASHION_MNIST_CLASSES
from ..data.assets import DEMO
from .plots import save_grid, with_grey_hole


def per_class(errors: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return {int(c): errors[labels == c].mean().item() for c in labels.unique()}


MOVED = 1.2  # a retain class whose error grew by this factor is explained by its nearest forgotten class


def nearest_forgotten(images: torch.Tensor, labels: torch.Tensor, forget: Sequence[int]) -> dict[int, int]:
    """Each other class -> the forgotten class whose mean image is closest to its own."""
    means = {int(c): images[labels == c].float().mean(0) for c in labels.unique()}
    return {c: min(forget, key=lambda f: float((means[c] - means[f]).square().sum()))
            for c in means if c not in forget}


def format_table(before: dict, after: dict, forget: Sequence[int], nearest: Optional[dict] = None) -> str:
    """Per class: hole MSE before and after, and their ratio; which direction is good; why a
    retain class moved (the forgotten class it looks most like), where `nearest` is given."""
    lines = ["ratio = MSE after / before: on forget classes higher is better (the model no longer fills them in),",
             "on retain classes 1.00x is best (kept as it was).",
             f"{'class':<14}{'role':<8}{'MSE before':>11}{'MSE after':>11}{'ratio':>8}"]
    for c in sorted(before):
        role = "forget" if c in forget else "retain"
        ratio = after[c] / before[c]
        why = (f"  (looks most like forgotten {FASHION_MNIST_CLASSES[nearest[c]]})"
               if role == "retain" and nearest and ratio >= MOVED else "")
        lines.append(f"{FASHION_MNIST_CLASSES[c]:<14}{role:<8}{before[c]:>11.4f}{after[c]:>11.4f}{ratio:>7.2f}x{why}")
    for role, chosen in (("forget", [c for c in before if c in forget]),
                         ("retain", [c for c in before if c not in forget])):
        b = float(np.mean([before[c] for c in chosen]))
        a = float(np.mean([after[c] for c in chosen]))
        lines.append(f"{'mean':<14}{role:<8}{b:>11.4f}{a:>11.4f}{a / b:>7.2f}x")
    return "\n".join(lines)


def save_demo_grid(path, images, labels, visible, before, after, forget_classes=DEMO.forget_classes) -> Path:
    """One row per forget class and three retain classes: original, input, before, after."""
    corrupted = with_grey_hole(images, visible)
    rows = []
    for c in (*forget_classes, 2, 7, 9):
        i = int((labels == c).nonzero()[0])
        role = "forget" if c in forget_classes else "retain"
        rows.append((f"{role}\n{FASHION_MNIST_CLASSES[c]}",
                     torch.stack([images[i], corrupted[i], before[i], after[i]])))
    return save_grid(path, rows, ["original", "input", "before", "after"])

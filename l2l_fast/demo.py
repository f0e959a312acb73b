"""The demo (`l2l-fast demo`): unlearn two Fashion-MNIST classes from the shipped MAE and
show the effect: a per-class table of inpainting error and a PNG grid. Its settings are
written once, in assets.DEMO; examples/diffusers_demo.py reuses the table and the grid."""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .adapters import adapter_for
from .assets import DEMO, load_demo_images
from .data import FASHION_MNIST_CLASSES, fashion_mnist, first_per_class
from .evaluation.generation import generate, hole_errors, visible_pixels
from .evaluation.plots import save_grid, with_grey_hole
from .io import atomic_write
from .models.io import load_model, save_model
from .unlearning.recipe import unlearn


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


def run_demo(
    out_dir=DEMO.out,
    steps: int = DEMO.steps,
    batch_size: int = DEMO.batch_size,
    lr: float = DEMO.lr,
    alpha: float = DEMO.alpha,
    seed: int = DEMO.seed,
    eval_per_class: Optional[int] = None,
    progress: bool = True,
) -> dict:
    started = time.perf_counter()
    forget_classes, mask = DEMO.forget_classes, DEMO.mask
    model = load_model("demo").eval()
    train_images, train_labels = load_demo_images("train")
    test_images, test_labels = load_demo_images("test")
    if eval_per_class is not None:
        index = first_per_class(test_labels, range(10), eval_per_class)
        test_images, test_labels = test_images[index], test_labels[index]
    is_forget = torch.isin(train_labels, torch.tensor(forget_classes))
    forget_names = ", ".join(FASHION_MNIST_CLASSES[c] for c in forget_classes)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"Unlearning {forget_names} ({int(is_forget.sum())} images) from a {millions:.1f}M-parameter MAE, "
          f"keeping {int((~is_forget).sum())} images of the other 8 classes; mask {mask}.")

    adapter = adapter_for(model)
    visible = visible_pixels(adapter, test_images.shape[0], mask, batch_size=500)
    before_images = generate(adapter, test_images, mask, batch_size=500)
    before_errors = hole_errors(test_images, before_images, visible)

    unlearn(model, train_images[is_forget], train_images[~is_forget], steps=steps,
            batch_size=batch_size, lr=lr, alpha=alpha, mask=mask, seed=seed, progress=progress)
    model.eval()

    after_images = generate(adapter, test_images, mask, batch_size=500)
    after_errors = hole_errors(test_images, after_images, visible)
    before, after = per_class(before_errors, test_labels), per_class(after_errors, test_labels)
    print("\nInpainting error (mean squared error inside the hole) on held-out test images:")
    print(format_table(before, after, forget_classes, nearest_forgotten(test_images, test_labels, forget_classes)))

    grid = save_demo_grid(Path(out_dir) / "demo_grid.png", test_images, test_labels, visible, before_images,
                          after_images)
    saved = save_model(model, Path(out_dir) / "unlearned.safetensors", extra={"unlearn": {
        "forget_classes": list(forget_classes), "mask": mask, "steps": steps, "batch_size": batch_size,
        "lr": lr, "alpha": alpha, "seed": seed}})
    seconds = time.perf_counter() - started
    print(f"\nWrote {grid.resolve()} and the unlearned model {saved.resolve()}  ({seconds:.0f} s in all)")
    print(f"Next, measure it against the original (FID, accuracy, per class):\n  {eval_command(saved, out_dir)}")
    return {"before": before, "after": after, "grid": grid, "model": saved, "seconds": seconds}


def eval_command(model: Path, out_dir) -> str:
    """The `l2l-fast eval` that compares the demo's unlearned model with the original."""
    return shlex.join(["l2l-fast", "eval", "--model", "demo", str(model), "--names", "original", "unlearned",
                       "--mask", DEMO.mask, "--forget", *map(str, DEMO.forget_classes),
                       "--out", str(Path(out_dir) / "eval")])


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

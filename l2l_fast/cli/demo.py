"""The demo (`l2l-fast demo`): unlearn two Fashion-MNIST classes from the shipped MAE and
show the effect: a per-class table of inpainting error and a PNG grid (evaluation/before_after.py).
Its settings are written once, in data/assets.DEMO."""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Optional

import torch

from ..adapters import adapter_for
from ..data.assets import DEMO, load_demo_images
from ..data import FASHION_MNIST_CLASSES, first_per_class
from ..evaluation.before_after import format_table, nearest_forgotten, per_class, save_demo_grid
from ..evaluation.generation import generate, hole_errors, visible_pixels
from ..models.io import load_model, save_model
from ..unlearning.recipe import unlearn


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

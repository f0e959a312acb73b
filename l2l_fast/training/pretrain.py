"""Pretraining a generator on an image set with its own loss (the project's models
for Fashion-MNIST), with periodic atomic checkpoints and resume."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ..models.masks import parse_mask
from .loop import train_loop

PRETRAIN_MASKS = ("random:0.75", "inpaint:3", "outpaint:3")


def pretrain(
    adapter,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    masks: Sequence[str] = PRETRAIN_MASKS,
    seed: int = 0,
    state_path: Optional[Path] = None,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> list[float]:
    """Train a generator with its own loss (`adapter.task_loss`) on `images`,
    cycling through `masks` (one spec per step). Parameters with requires_grad
    are trained (a frozen tokenizer stays frozen). Checkpoints and resume as
    `train_loop`.
    """
    specs = [parse_mask(m, "masks") for m in masks]

    def step_loss(step: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(images.shape[0], (batch_size,), generator=generator)
        corruption = adapter.draw(specs[step % len(specs)], batch_size, generator)
        return adapter.task_loss(images[index], corruption)

    return train_loop(adapter.model, step_loss, steps=steps, lr=lr, seed=seed, state_path=state_path,
                      checkpoint_every=checkpoint_every, progress=progress)

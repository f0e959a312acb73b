"""Pretraining a generator on an image set with its own loss (the project's models
for Fashion-MNIST), with periodic atomic checkpoints and resume."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .masks import parse_mask
from .optim import adamw, set_lr, warmup_cosine

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
    are trained (a frozen tokenizer stays frozen).

    With `state_path`, the training state is saved there every `checkpoint_every`
    steps and a run finding one resumes from it.
    """
    model = adapter.model
    specs = [parse_mask(m, "masks") for m in masks]
    generator = torch.Generator().manual_seed(seed)
    optimizer = adamw(model.named_parameters(), lr)
    warmup = max(1, steps // 20)
    start, losses = 0, []
    if state_path is not None and Path(state_path).exists():
        tensors, meta = checkpoint.read(state_path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        checkpoint.restore_optimizer(optimizer, tensors, meta["optimizer"])
        generator.set_state(tensors["rng"])
        start, losses = meta["step"], meta["losses"]
    model.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="pretrain", disable=not progress)
    for step in bar:
        set_lr(optimizer, lr * warmup_cosine(step, steps, warmup))
        index = torch.randint(images.shape[0], (batch_size,), generator=generator)
        corruption = adapter.draw(specs[step % len(specs)], batch_size, generator)
        loss = adapter.task_loss(images[index], corruption)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        done = step + 1
        if state_path is not None and (done % checkpoint_every == 0 or done == steps):
            optim_tensors, optim_meta = checkpoint.optimizer_tensors(optimizer)
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update(optim_tensors, rng=generator.get_state())
            checkpoint.atomic_save(
                tensors, {"step": done, "losses": losses, "optimizer": optim_meta}, state_path
            )
    model.eval()
    return losses

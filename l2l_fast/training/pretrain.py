"""Pretraining a generator on an image set with its own loss (the project's models
for Fashion-MNIST), with periodic atomic checkpoints and resume."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..models import io as checkpoint
from ..models.masks import parse_mask
from .optim import WEIGHT_DECAY, adamw, set_lr, warmup_cosine

PRETRAIN_MASKS = ("random:0.75", "inpaint:3", "outpaint:3")


def train_loop(
    module: torch.nn.Module,
    step_loss: Callable[[int, torch.Generator], torch.Tensor],
    *,
    steps: int,
    lr: float,
    seed: int,
    weight_decay: float = WEIGHT_DECAY,
    state_path: Optional[Path] = None,
    checkpoint_every: int = 500,
    progress: bool = True,
    desc: str = "pretrain",
    fresh_start: Optional[Callable[[torch.Generator], None]] = None,
) -> list[float]:
    """AdamW with warm-up + cosine on `step_loss(step, generator)` for `steps` steps.

    With `state_path`, the training state (weights, optimizer, generator, losses)
    is saved there atomically every `checkpoint_every` steps, and a run finding
    one resumes from it, bit for bit on the CPU; otherwise `fresh_start(generator)`
    runs first.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = adamw(module.named_parameters(), lr, weight_decay)
    warmup = max(1, steps // 20)
    start, losses = 0, []
    if state_path is not None and Path(state_path).exists():
        tensors, meta = checkpoint.read(state_path)
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        checkpoint.restore_optimizer(optimizer, tensors, meta["optimizer"])
        generator.set_state(tensors["rng"])
        start, losses = meta["step"], meta["losses"]
    elif fresh_start is not None:
        fresh_start(generator)
    module.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, disable=not progress)
    for step in bar:
        set_lr(optimizer, lr * warmup_cosine(step, steps, warmup))
        loss = step_loss(step, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        done = step + 1
        if state_path is not None and (done % checkpoint_every == 0 or done == steps):
            optim_tensors, optim_meta = checkpoint.optimizer_tensors(optimizer)
            tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
            tensors.update(optim_tensors, rng=generator.get_state())
            checkpoint.atomic_save(tensors, {"step": done, "losses": losses, "optimizer": optim_meta}, state_path)
    module.eval()
    return losses


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

"""The one resumable training loop of the project's own models (the generators'
pretraining, the VQ tokenizer, the evaluation classifier): AdamW with warm-up +
cosine on a step loss, with periodic atomic checkpoints and bit-exact resume."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from .files import read, save_tensors
from .checkpointing import optimizer_tensors, restore_optimizer
from .optim import WEIGHT_DECAY, adamw, set_lr, warmup_cosine


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
        tensors, meta = read(state_path)
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        restore_optimizer(optimizer, tensors, meta["optimizer"])
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
            optim_tensors, optim_meta = optimizer_tensors(optimizer)
            tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
            tensors.update(optim_tensors, rng=generator.get_state())
            save_tensors(tensors, {"step": done, "losses": losses, "optimizer": optim_meta}, state_path)
    module.eval()
    return losses

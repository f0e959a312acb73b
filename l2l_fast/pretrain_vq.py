"""Pretraining a VQ tokenizer on an image set (reconstruction + VQ losses), with
periodic atomic checkpoints and resume, as `pretrain` does for the generators.
The MAGE transformer is then trained with `pretrain(VQAdapter(model), ...)`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .models import VQTokenizer
from .optim import adamw, set_lr, warmup_cosine


@torch.no_grad()
def _init_codebook(tokenizer: VQTokenizer, images: torch.Tensor, generator: torch.Generator) -> None:
    """Codebook entries from encoder outputs of random images (avoids dead codes at start)."""
    size = tokenizer.n_embed
    height, width = tokenizer.grid(*images.shape[2:])
    index = torch.randint(images.shape[0], (-(-size // (height * width)),), generator=generator)
    latents = tokenizer.encoder(images[index]).permute(0, 2, 3, 1).flatten(0, 2)
    pick = torch.randperm(latents.shape[0], generator=generator)[:size]
    codes = latents[pick.repeat(-(-size // pick.numel()))[:size]]
    tokenizer.quantize.embedding.weight.copy_(codes)


def pretrain_tokenizer(
    tokenizer: VQTokenizer,
    images: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    state_path: Optional[Path] = None,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> list[float]:
    """Train `tokenizer` with `tokenizer.loss` on `images`; returns the per-step losses.

    A fresh run first sets the codebook to encoder outputs of random training images.
    All tokenizer parameters are trained (also when frozen inside a MAGE); their
    requires_grad flags are restored afterwards. With `state_path`, the training state
    is saved there every `checkpoint_every` steps and a run finding one resumes from it.
    """
    params = list(tokenizer.parameters())
    flags = [p.requires_grad for p in params]
    tokenizer.requires_grad_(True)
    try:
        generator = torch.Generator().manual_seed(seed)
        optimizer = adamw(tokenizer.named_parameters(), lr, weight_decay=0.0)
        warmup = max(1, steps // 20)
        start, losses = 0, []
        if state_path is not None and Path(state_path).exists():
            tensors, meta = checkpoint.read(state_path)
            tokenizer.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            checkpoint.restore_optimizer(optimizer, tensors, meta["optimizer"])
            generator.set_state(tensors["rng"])
            start, losses = meta["step"], meta["losses"]
        else:
            _init_codebook(tokenizer, images, generator)
        tokenizer.train()
        bar = tqdm(range(start, steps), initial=start, total=steps, desc="tokenizer", disable=not progress)
        for step in bar:
            set_lr(optimizer, lr * warmup_cosine(step, steps, warmup))
            index = torch.randint(images.shape[0], (batch_size,), generator=generator)
            loss = tokenizer.loss(images[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            done = step + 1
            if state_path is not None and (done % checkpoint_every == 0 or done == steps):
                optim_tensors, optim_meta = checkpoint.optimizer_tensors(optimizer)
                tensors = {f"model.{k}": v for k, v in tokenizer.state_dict().items()}
                tensors.update(optim_tensors, rng=generator.get_state())
                checkpoint.atomic_save(
                    tensors, {"step": done, "losses": losses, "optimizer": optim_meta}, state_path
                )
    finally:
        for param, flag in zip(params, flags):
            param.requires_grad_(flag)
    tokenizer.eval()
    return losses

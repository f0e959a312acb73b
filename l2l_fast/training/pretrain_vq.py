"""Pretraining a VQ tokenizer on an image set (reconstruction + VQ losses), with
periodic atomic checkpoints and resume, as `pretrain` does for the generators.
The MAGE transformer is then trained with `pretrain(VQAdapter(model), ...)`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..models import VQTokenizer
from .loop import train_loop


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

    def step_loss(step: int, generator: torch.Generator) -> torch.Tensor:
        return tokenizer.loss(images[torch.randint(images.shape[0], (batch_size,), generator=generator)])

    try:
        return train_loop(tokenizer, step_loss, steps=steps, lr=lr, seed=seed, weight_decay=0.0,
                          state_path=state_path, checkpoint_every=checkpoint_every, progress=progress,
                          desc="tokenizer", fresh_start=lambda g: _init_codebook(tokenizer, images, g))
    finally:
        for param, flag in zip(params, flags):
            param.requires_grad_(flag)

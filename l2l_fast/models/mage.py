"""MAGE (Li et al., 2023): a masked token transformer over a frozen VQGAN tokenizer.

The tokenizer turns an image into a grid of codebook ids. The `encoder` embeds the
visible ids (plus a buffer token, MAGE's class-token slot at position 0) and runs
a ViT over them only; the `decoder` puts the buffer token's embedding at every
hidden position (MAGE's `pad_with_cls_token`), runs its own blocks and predicts
codebook logits for every position. Generation is MaskGIT's iterative decoding.

Submodule and parameter names follow LTH14/mage under `encoder.` and `decoder.`
(see `mage_official.py` for the mapping). Unlike the official model there is no
dropout, the encoder drops every hidden token (the official one drops a fixed
fraction and embeds the rest as [MASK]), the loss has no label smoothing, and the
decoder's output projection has its own copy of the codebook embeddings.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .mae import Block, init_weights, visible_ids
from .masks import pixel_keep
from .vq import VQTokenizer


class TokenEmbedding(nn.Module):
    """LayerNorm(word + position), as MAGE's BertEmbeddings."""

    def __init__(self, vocab_size: int, dim: int, positions: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions))


class MAGEEncoder(nn.Module):
    def __init__(self, num_tokens, codebook_size, embed_dim, depth, num_heads, mlp_ratio):
        super().__init__()
        self.buffer_id = codebook_size
        self.token_emb = TokenEmbedding(codebook_size + 1, embed_dim, num_tokens + 1)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """ids [B, L] codebook ids, keep [B, L] -> latent [B, 1 + L_visible, D]."""
        visible = visible_ids(keep, ids.device)
        start = torch.zeros_like(visible[:, :1])
        tokens = torch.cat([start + self.buffer_id, torch.gather(ids, 1, visible)], dim=1)
        x = self.token_emb(tokens, torch.cat([start, visible + 1], dim=1))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MlmLayer(nn.Module):
    """Hidden states -> codebook logits through (a copy of) the token embeddings."""

    def __init__(self, dim: int, embed_dim: int, codebook_size: int):
        super().__init__()
        self.fc = nn.Linear(dim, embed_dim)
        self.ln = nn.LayerNorm(embed_dim)
        self.word_embeddings = nn.Parameter(torch.zeros(codebook_size, embed_dim))
        self.bias = nn.Parameter(torch.zeros(codebook_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(F.gelu(self.fc(x))) @ self.word_embeddings.t() + self.bias


class MAGEDecoder(nn.Module):
    def __init__(self, num_tokens, codebook_size, embed_dim, dim, depth, num_heads, mlp_ratio):
        super().__init__()
        self.decoder_embed = nn.Linear(embed_dim, dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        self.decoder_blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlm_layer = MlmLayer(dim, embed_dim, codebook_size)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """latent [B, 1 + L_visible, D], keep [B, L] -> logits [B, L, codebook_size]."""
        x = self.decoder_embed(latent)
        batch, num_tokens = keep.shape
        full = x[:, :1].expand(batch, num_tokens, -1).clone()
        ids = visible_ids(keep, x.device)
        full.scatter_(1, ids[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        return self.mlm_layer(self.decoder_norm(x))[:, 1:]


def _uniform(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Uniform noise drawn on the generator's device, so a seed means the same draw anywhere."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def _gumbel(shape, generator, device) -> torch.Tensor:
    return -torch.log(-torch.log(_uniform(shape, generator, device)))


class MAGE(nn.Module):
    """Masked generative encoder: `encoder(ids, keep)` -> latent, `decoder(latent, keep)` -> logits.

    `tokenizer` is the VQTokenizer's config (None: MAGE's own VQGAN); it is frozen.
    """

    family = "vq"

    def __init__(
        self,
        img_size: int = 256,
        tokenizer: Optional[dict] = None,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 768,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.tokenizer = VQTokenizer(**(tokenizer or {}))
        self.tokenizer.requires_grad_(False)
        self.config = dict(
            img_size=img_size, tokenizer=self.tokenizer.config, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio,
        )
        self.img_size, self.in_chans = img_size, self.tokenizer.in_chans
        self.patch_size = self.tokenizer.factor
        self.grid = self.tokenizer.grid(img_size, img_size)
        self.codebook_size = self.tokenizer.n_embed
        num_tokens = self.grid[0] * self.grid[1]
        self.encoder = MAGEEncoder(num_tokens, self.codebook_size, embed_dim, depth, num_heads, mlp_ratio)
        self.decoder = MAGEDecoder(
            num_tokens, self.codebook_size, embed_dim, decoder_embed_dim, decoder_depth,
            decoder_num_heads, mlp_ratio,
        )
        for part in (self.encoder, self.decoder):
            part.apply(init_weights)
        for table in (self.encoder.token_emb.word_embeddings.weight,
                      self.encoder.token_emb.position_embeddings.weight,
                      self.decoder.decoder_pos_embed_learned, self.decoder.mlm_layer.word_embeddings):
            nn.init.normal_(table, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @torch.no_grad()
    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> codebook ids [B, L] with the frozen tokenizer."""
        return self.tokenizer.encode(images)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Codebook logits [B, L, codebook_size] for every position."""
        return self.decoder(self.encoder(ids, keep), keep)

    def _ids(self, ids_or_images: torch.Tensor) -> torch.Tensor:
        return self.tokenize(ids_or_images) if ids_or_images.is_floating_point() else ids_or_images

    def loss(
        self, ids_or_images: torch.Tensor, keep: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """MAGE's training loss: token cross-entropy on the hidden tokens (against the
        tokens of `targets` instead when given). Inputs are images or codebook ids."""
        ids = self._ids(ids_or_images)
        target_ids = ids if targets is None else self._ids(targets)
        logits = self(ids, keep).float()
        error = F.cross_entropy(logits.flatten(0, 1), target_ids.flatten(), reduction="none")
        error = error.view_as(ids)
        hidden = (~keep).to(error.device, torch.float32, non_blocking=True)
        return (error * hidden).sum() / hidden.sum().clamp_min(1.0)

    @torch.no_grad()
    def generate_ids(self, ids: torch.Tensor, keep: torch.Tensor, steps: int = 8, temperature: float = 4.5,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """MaskGIT decoding of the hidden ids: at each of `steps` iterations sample every
        unknown token, keep the most confident ones and re-mask the rest (cosine schedule),
        with Gumbel noise of scale temperature * (1 - progress) on the confidences."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        known = keep.clone()
        ids = ids.clone()
        total = int((~keep).sum(dim=1).max())
        for step in range(steps):
            remaining = int((~known[0]).sum())
            if remaining == 0:
                break
            logits = self(ids, known).float()
            sampled = (logits + _gumbel(logits.shape, generator, logits.device)).argmax(dim=-1)
            sampled = torch.where(known, ids, sampled)
            ids = sampled
            progress = (step + 1) / steps
            hide = min(math.floor(total * math.cos(math.pi / 2 * progress)), remaining - 1)
            if hide <= 0:
                break
            log_p = torch.log_softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]
            noise = _gumbel(log_p.shape, generator, log_p.device)
            confidence = torch.where(known, math.inf, log_p + temperature * (1 - progress) * noise)
            hidden = confidence.argsort(dim=1)[:, :hide]
            known = torch.ones_like(known).scatter_(1, hidden, False)
        return ids

    @torch.no_grad()
    def generate(self, images: torch.Tensor, keep: torch.Tensor, steps: int = 8, temperature: float = 4.5,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Fill the hidden tokens' pixels; outside the hole the output is the input, exactly."""
        ids = self.generate_ids(self.tokenize(images), keep, steps, temperature, generator)
        decoded = self.tokenizer.decode(ids, self.grid).to(images.dtype)
        visible = pixel_keep(keep, self.grid, self.patch_size).to(images.device).bool()
        return torch.where(visible, images, decoded)

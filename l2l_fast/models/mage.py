"""MAGE (Li et al., 2023): a masked token transformer over a frozen VQGAN tokenizer.

The tokenizer turns an image into a grid of codebook ids. The `encoder` embeds a
buffer token (MAGE's class-token slot at position 0) and the ids of the tokens it
is given, and runs a ViT over them; the `decoder` puts the buffer token's embedding
at every hidden position (MAGE's `pad_with_cls_token`), runs its own blocks and
predicts codebook logits for every position. The vocabulary is the K codes, the
buffer token (MAGE's unconditional "fake class" label) and [MASK].

Hidden tokens, as upstream (LTH14/mage `forward_encoder`): a hidden token is either
dropped (left out of the encoder's sequence) or fed as [MASK]; `drop` says which
(default: every hidden token dropped). MAGE's training drops ceil(0.5 L) tokens and
masks the rest of its (more numerous) hidden ones; its decoding drops none.

Generation (`generate_ids`) is MAGE's iterative decoding as the paper authors run it
for inpainting (jpmorganchase/i2i_mage `inpaint_image_mage_multisteps`, after LTH14's
`gen_image`), 20 iterations at temperature 6.0 by default: at iteration s of S, with
progress p = (s + 1) / S and schedule m = cos(π/2 · p), an iteration is skipped while
m is at least the hidden fraction; otherwise every unknown token is embedded as [MASK]
(none dropped), a token is sampled at every unknown position from the logits
(categorical, by Gumbel-max), its confidence is log p(token) + 6.0 (1 − p) · Gumbel
(+inf for known tokens), and the max(1, min(unknown − 1, floor(L · m))) least confident
are hidden again; known tokens never change. The last iteration's samples are the
result. Two deliberate details: known tokens get confidence +inf (LTH14) where the
authors' fork uses 1e20, whose log (46) plus tempered Gumbel noise could re-mask a
known token; the count of tokens to re-mask is taken per row (upstream takes row 0's;
every row of a patch mask hides as many tokens, so they agree).

The output projection (tied weights), decided explicitly by `output_projection`:
- "copy" (default, the paper's frozen decoder): the decoder projects onto its own copy
  of the codebook embeddings (`decoder.mlm_layer.word_embeddings`, loaded from the
  official embedding table), so unlearning the encoder leaves the decoder unchanged.
- "encoder" (upstream's and the authors' code): the decoder projects onto the encoder's
  live token embeddings (detached), so the "frozen" decoder's logits move with the
  encoder being unlearned.

Submodule and parameter names follow LTH14/mage under `encoder.` and `decoder.`
(see `mage_official.py` for the mapping). Unlike the official model there is no
dropout. The training loss is upstream's: cross-entropy with label smoothing 0.1
over the K codes, on the hidden tokens.
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

PROJECTIONS = ("copy", "encoder")
LABEL_SMOOTHING = 0.1  # upstream's LabelSmoothingCrossEntropy


class TokenEmbedding(nn.Module):
    """LayerNorm(word + position), as MAGE's BertEmbeddings."""

    def __init__(self, vocab_size: int, dim: int, positions: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions))


def _present(keep: torch.Tensor, drop: Optional[torch.Tensor]) -> torch.Tensor:
    """The positions in the encoder's sequence: visible, or hidden and not dropped."""
    if drop is None:
        return keep
    if drop.shape != keep.shape:
        raise ValueError(f"drop must have keep's shape {list(keep.shape)}, got {list(drop.shape)}")
    if bool((drop & keep.to(drop.device)).any()):
        raise ValueError("drop may only hold hidden tokens (keep False)")
    return ~drop


class MAGEEncoder(nn.Module):
    def __init__(self, num_tokens, codebook_size, embed_dim, depth, num_heads, mlp_ratio):
        super().__init__()
        self.buffer_id, self.mask_id = codebook_size, codebook_size + 1
        self.token_emb = TokenEmbedding(codebook_size + 2, embed_dim, num_tokens + 1)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor, drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ids [B, L] codebook ids, keep [B, L] visible tokens, drop [B, L] the hidden tokens
        left out (default: all; the other hidden ones enter as [MASK])
        -> latent [B, 1 + L - dropped, D]."""
        present = _present(keep, drop)
        positions = visible_ids(present, ids.device)
        if drop is not None:
            ids = torch.where(keep.to(ids.device, non_blocking=True), ids, self.mask_id)
        start = torch.zeros_like(positions[:, :1])
        tokens = torch.cat([start + self.buffer_id, torch.gather(ids, 1, positions)], dim=1)
        x = self.token_emb(tokens, torch.cat([start, positions + 1], dim=1))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MlmLayer(nn.Module):
    """Hidden states -> codebook logits through token embeddings: its own copy, or the
    ones given to `forward`."""

    def __init__(self, dim: int, embed_dim: int, codebook_size: int, own_embeddings: bool = True):
        super().__init__()
        self.fc = nn.Linear(dim, embed_dim)
        self.ln = nn.LayerNorm(embed_dim)
        if own_embeddings:
            self.word_embeddings = nn.Parameter(torch.zeros(codebook_size, embed_dim))
        self.bias = nn.Parameter(torch.zeros(codebook_size))

    def forward(self, x: torch.Tensor, word_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        if word_embeddings is None:
            word_embeddings = self.word_embeddings
        return self.ln(F.gelu(self.fc(x))) @ word_embeddings.t().to(x.dtype) + self.bias


class MAGEDecoder(nn.Module):
    def __init__(self, num_tokens, codebook_size, embed_dim, dim, depth, num_heads, mlp_ratio,
                 own_embeddings: bool = True):
        super().__init__()
        self.decoder_embed = nn.Linear(embed_dim, dim)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        self.decoder_blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlm_layer = MlmLayer(dim, embed_dim, codebook_size, own_embeddings)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor, drop: Optional[torch.Tensor] = None,
                word_embeddings: Optional[torch.Tensor] = None) -> torch.Tensor:
        """latent [B, 1 + L - dropped, D], keep [B, L], drop as the encoder's
        -> logits [B, L, codebook_size]; every hidden position reads the buffer token."""
        x = self.decoder_embed(latent)
        batch, num_tokens = keep.shape
        full = x[:, :1].expand(batch, num_tokens, -1).clone()
        ids = visible_ids(_present(keep, drop), x.device)
        full.scatter_(1, ids[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
        if drop is not None:
            full = torch.where(keep.to(x.device, non_blocking=True)[..., None], full, x[:, :1])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        return self.mlm_layer(self.decoder_norm(x), word_embeddings)[:, 1:]


def _uniform(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Uniform noise drawn on the generator's device, so a seed means the same draw anywhere."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def _gumbel(shape, generator, device) -> torch.Tensor:
    return -torch.log(-torch.log(_uniform(shape, generator, device)))


class MAGE(nn.Module):
    """Masked generative encoder: `encoder(ids, keep, drop)` -> latent,
    `decoder(latent, keep, drop, word_embeddings)` -> logits; `forward` chains them.

    `tokenizer` is the VQTokenizer's config (None: MAGE's own VQGAN); it is frozen.
    `output_projection`: "copy" (the decoder's own frozen copy of the codebook
    embeddings, the default) or "encoder" (the encoder's live ones, as upstream); see
    the module doc.
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
        output_projection: str = "copy",
    ):
        super().__init__()
        if output_projection not in PROJECTIONS:
            raise ValueError(f"output_projection must be one of {PROJECTIONS}, got {output_projection!r}")
        self.tokenizer = VQTokenizer(**(tokenizer or {}))
        self.tokenizer.requires_grad_(False)
        self.config = dict(
            img_size=img_size, tokenizer=self.tokenizer.config, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, output_projection=output_projection,
        )
        self.img_size, self.in_chans = img_size, self.tokenizer.in_chans
        self.patch_size = self.tokenizer.factor
        self.grid = self.tokenizer.grid(img_size, img_size)
        self.codebook_size = self.tokenizer.n_embed
        self.output_projection = output_projection
        num_tokens = self.grid[0] * self.grid[1]
        self.encoder = MAGEEncoder(num_tokens, self.codebook_size, embed_dim, depth, num_heads, mlp_ratio)
        self.decoder = MAGEDecoder(
            num_tokens, self.codebook_size, embed_dim, decoder_embed_dim, decoder_depth,
            decoder_num_heads, mlp_ratio, own_embeddings=output_projection == "copy",
        )
        for part in (self.encoder, self.decoder):
            part.apply(init_weights)
        tables = [self.encoder.token_emb.word_embeddings.weight, self.encoder.token_emb.position_embeddings.weight,
                  self.decoder.decoder_pos_embed_learned]
        if output_projection == "copy":
            tables.append(self.decoder.mlm_layer.word_embeddings)
        for table in tables:
            nn.init.normal_(table, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @torch.no_grad()
    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> codebook ids [B, L] with the frozen tokenizer."""
        return self.tokenizer.encode(images)

    def output_embeddings(self) -> Optional[torch.Tensor]:
        """The table the decoder projects onto when it is not its own copy."""
        if self.output_projection == "copy":
            return None
        return self.encoder.token_emb.word_embeddings.weight[: self.codebook_size].detach()

    def forward(self, ids: torch.Tensor, keep: torch.Tensor, drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codebook logits [B, L, codebook_size] for every position."""
        return self.decoder(self.encoder(ids, keep, drop), keep, drop, self.output_embeddings())

    def _ids(self, ids_or_images: torch.Tensor) -> torch.Tensor:
        return self.tokenize(ids_or_images) if ids_or_images.is_floating_point() else ids_or_images

    def loss(
        self, ids_or_images: torch.Tensor, keep: torch.Tensor, targets: Optional[torch.Tensor] = None,
        drop: Optional[torch.Tensor] = None, label_smoothing: float = LABEL_SMOOTHING,
    ) -> torch.Tensor:
        """MAGE's training loss: label-smoothed token cross-entropy on the hidden tokens
        (against the tokens of `targets` instead when given). Inputs are images or ids."""
        ids = self._ids(ids_or_images)
        target_ids = ids if targets is None else self._ids(targets)
        logits = self(ids, keep, drop).float()
        error = F.cross_entropy(logits.flatten(0, 1), target_ids.flatten(), reduction="none",
                                label_smoothing=label_smoothing)
        error = error.view_as(ids)
        hidden = (~keep).to(error.device, torch.float32, non_blocking=True)
        return (error * hidden).sum() / hidden.sum().clamp_min(1.0)

    @torch.no_grad()
    def generate_ids(self, ids: torch.Tensor, keep: torch.Tensor, steps: int = 20, temperature: float = 6.0,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """MAGE's iterative decoding of the hidden ids (see the module doc); the visible
        ids are returned unchanged. Per executed iteration the generator draws the
        sampling noise [B, L, K], then the confidence noise [B, L]."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        known = keep.to(ids.device)
        hidden_fraction = float((~known).float().mean())
        nothing_dropped = torch.zeros_like(known)
        sampled = ids
        for step in range(steps):
            progress = (step + 1) / steps
            schedule = math.cos(math.pi / 2 * progress)
            if schedule >= hidden_fraction:
                continue
            unknown = ~known
            logits = self(ids, known, nothing_dropped).float()
            draw = (logits + _gumbel(logits.shape, generator, logits.device)).argmax(dim=-1)
            sampled = torch.where(unknown, draw, ids)
            chosen = torch.softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]
            noise = _gumbel(chosen.shape, generator, chosen.device)
            confidence = torch.where(unknown, torch.log(chosen) + temperature * (1 - progress) * noise, math.inf)
            count = (unknown.sum(dim=1, keepdim=True) - 1).clamp_max(math.floor(self.num_tokens * schedule))
            count = count.clamp_min(1)
            cut = confidence.sort(dim=1).values.gather(1, count - 1)
            known = confidence > cut
            ids = sampled
        return sampled

    @torch.no_grad()
    def generate(self, images: torch.Tensor, keep: torch.Tensor, steps: int = 20, temperature: float = 6.0,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Fill the hidden tokens' pixels; outside the hole the output is the input, exactly."""
        ids = self.generate_ids(self.tokenize(images), keep, steps, temperature, generator)
        decoded = self.tokenizer.decode(ids, self.grid).to(images.dtype)
        visible = pixel_keep(keep, self.grid, self.patch_size).to(images.device).bool()
        return torch.where(visible, images, decoded)

"""A ViT masked autoencoder (He et al., 2022) with the MAE paper's split: the
encoder sees only the visible patches, the decoder fills in the hidden ones.

Submodule and parameter names follow facebookresearch/mae under `encoder.` and
`decoder.` prefixes, so official checkpoints map onto it key for key.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def sincos_pos_embed(dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [1, (1 +) H*W, dim], as in MAE."""
    if dim % 4:
        raise ValueError(f"embedding dim must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    ys, xs = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )

    def embed(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.flatten()[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([embed(xs), embed(ys)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float().unsqueeze(0)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm's ViT block)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, L, dim]


def visible_ids(keep: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[B, L] boolean mask -> [B, L_visible] indices of visible patches, ascending, on
    `device`. Computed where `keep` lives: a mask on the host costs the GPU no sync."""
    counts = keep.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError("every sample of a batch must keep the same number of patches")
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    return order[:, : int(counts[0])].to(device, non_blocking=True)


class MAEEncoder(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, eps=1e-6):
        super().__init__()
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, *self.grid), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W], keep [B, L] -> latent [B, 1 + L_visible, D]."""
        tokens = self.patch_embed(images) + self.pos_embed[:, 1:]
        ids = visible_ids(keep, tokens.device)
        tokens = torch.gather(tokens, 1, ids[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MAEDecoder(nn.Module):
    def __init__(self, grid, patch_size, in_chans, embed_dim, dim, depth, num_heads, mlp_ratio, eps=1e-6):
        super().__init__()
        self.grid = grid
        self.decoder_embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(dim, *grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, eps) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=eps)
        self.decoder_pred = nn.Linear(dim, patch_size * patch_size * in_chans)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """latent [B, 1 + L_visible, D], keep [B, L] -> patch pixels [B, L, p*p*C]."""
        x = self.decoder_embed(latent)
        batch, num_patches = keep.shape
        full = self.mask_token.to(x.dtype).expand(batch, num_patches, -1).clone()
        ids = visible_ids(keep, x.device)
        full.scatter_(1, ids[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation (also MAGE's): Xavier-uniform linear and patch-embedding
    weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        nn.init.zeros_(module.bias)


class MAE(nn.Module):
    """Masked autoencoder: `encoder(images, keep)` -> latent, `decoder(latent, keep)` -> patches."""

    family = "mae"

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.config = dict(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio,
            norm_eps=norm_eps,  # LayerNorm epsilon: upstream's 1e-6; HF ViTMAE's default is 1e-12
        )
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.encoder = MAEEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, norm_eps)
        self.grid = self.encoder.grid
        self.decoder = MAEDecoder(
            self.grid, patch_size, in_chans, embed_dim, decoder_embed_dim, decoder_depth,
            decoder_num_heads, mlp_ratio, norm_eps,
        )
        self.apply(init_weights)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.decoder.mask_token, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, L, p*p*C] (MAE's order: row, column, channel)."""
        p, (gh, gw) = self.patch_size, self.grid
        x = images.reshape(images.shape[0], self.in_chans, gh, p, gw, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(images.shape[0], gh * gw, p * p * self.in_chans)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        p, (gh, gw) = self.patch_size, self.grid
        x = patches.reshape(patches.shape[0], gh, gw, p, p, self.in_chans)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(patches.shape[0], self.in_chans, gh * p, gw * p)

    def forward(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Predicted patches [B, L, p*p*C] for every position."""
        return self.decoder(self.encoder(images, keep), keep)

    def loss(self, images: torch.Tensor, keep: torch.Tensor, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """MAE's training loss: pixel MSE on the hidden patches (against `targets`
        instead of the images when given)."""
        targets = images if targets is None else targets
        error = (self(images, keep) - self.patchify(targets)).square().mean(dim=-1)
        hidden = (~keep).to(error.device, torch.float32, non_blocking=True)
        return (error * hidden).sum() / hidden.sum().clamp_min(1.0)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Fill the hidden patches; visible patches are the input, exactly."""
        predicted = self(images, keep).to(images.dtype)
        patches = torch.where(keep.to(images.device, non_blocking=True)[..., None], self.patchify(images), predicted)
        return self.unpatchify(patches)


"""A VQGAN tokenizer: convolutional encoder, nearest-neighbour codebook, decoder.

The layout is that of the VQGAN that MAGE ships (taming-transformers' Encoder and
Decoder as converted from MaskGIT's JAX tokenizer: no attention, bias-free 3x3
convolutions in the residual blocks, average-pool downsampling, no quant_conv),
with the same submodule names, so the official tokenizer maps onto it key for key.
Each level but the last halves the resolution: the downsampling factor is
2 ** (len(ch_mult) - 1). It is trained here with reconstruction MSE and the VQ
losses only (no GAN or perceptual loss).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            # MaskGIT's residual: when the width changes, the shortcut is taken from h.
            return self.nin_shortcut(h) + h
        return x + h


def _level(blocks: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    return level


def _middle(channels: int, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, groups)
    mid.block_2 = ResnetBlock(channels, channels, groups)
    return mid


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, in_chans, ch, ch_mult, num_res_blocks, z_channels, groups):
        super().__init__()
        self.conv_in = nn.Conv2d(in_chans, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        width = ch
        for mult in ch_mult:
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, ch * mult, groups))
                width = ch * mult
            self.down.append(_level(blocks))
        self.mid = _middle(width, groups)
        self.norm_out = nn.GroupNorm(groups, width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, z_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(images)
        for index, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if index != len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid.block_2(self.mid.block_1(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, out_chans, ch, ch_mult, num_res_blocks, z_channels, groups):
        super().__init__()
        width = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = _middle(width, groups)
        levels = []
        for index in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(width, ch * ch_mult[index], groups))
                width = ch * ch_mult[index]
            level = _level(blocks)
            if index != 0:
                level.upsample = Upsample(width)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = nn.GroupNorm(groups, width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, out_chans, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook entry, straight-through gradient, codebook + β·commitment loss."""

    def __init__(self, n_embed: int, dim: int, beta: float):
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(n_embed, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C, h, w] -> ids [B, h*w] of the nearest entries (squared L2, fp32)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
        codes = self.embedding.weight.float()
        distance = flat.square().sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.square().sum(1)
        return distance.argmin(dim=1).reshape(z.shape[0], -1)

    def lookup(self, ids: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """ids [B, h*w] -> codes [B, C, h, w]."""
        codes = self.embedding(ids.reshape(ids.shape[0], *grid))
        return codes.permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor):
        """(straight-through z_q, VQ loss, ids) for latents z [B, C, h, w]."""
        ids = self.indices(z)
        z_q = self.lookup(ids, z.shape[2:]).to(z.dtype)
        loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        return z + (z_q - z).detach(), loss, ids


class VQTokenizer(nn.Module):
    """Images [B, C, H, W] <-> token ids [B, (H/f)*(W/f)], f = 2 ** (len(ch_mult) - 1).

    Defaults are MAGE's tokenizer (256x256 RGB -> 16x16 tokens of a 1024-entry codebook).
    """

    def __init__(
        self,
        in_chans: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        n_embed: int = 1024,
        norm_groups: int = 32,
        beta: float = 0.25,
    ):
        super().__init__()
        ch_mult = [int(m) for m in ch_mult]
        for width in {ch} | {ch * m for m in ch_mult}:
            if width % norm_groups:
                raise ValueError(f"channel width {width} is not divisible by norm_groups {norm_groups}")
        self.config = dict(
            in_chans=in_chans, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
            z_channels=z_channels, n_embed=n_embed, norm_groups=norm_groups, beta=beta,
        )
        self.in_chans, self.n_embed = in_chans, n_embed
        self.factor = 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(in_chans, ch, ch_mult, num_res_blocks, z_channels, norm_groups)
        self.decoder = Decoder(in_chans, ch, ch_mult, num_res_blocks, z_channels, norm_groups)
        self.quantize = VectorQuantizer(n_embed, z_channels, beta)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the tokenizer's factor {self.factor}"
            )
        return height // self.factor, width // self.factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> token ids [B, h*w] (row-major)."""
        self.grid(*images.shape[2:])
        return self.quantize.indices(self.encoder(images))

    def decode(self, ids: torch.Tensor, grid: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """ids [B, h*w] -> images [B, C, H, W]; grid (h, w) defaults to square."""
        if grid is None:
            side = int(round(ids.shape[1] ** 0.5))
            if side * side != ids.shape[1]:
                raise ValueError(f"{ids.shape[1]} tokens are not a square grid; pass grid=(h, w)")
            grid = (side, side)
        return self.decoder(self.quantize.lookup(ids, grid))

    def forward(self, images: torch.Tensor):
        """(reconstruction through the straight-through codes, VQ loss)."""
        self.grid(*images.shape[2:])
        z_q, vq_loss, _ = self.quantize(self.encoder(images))
        return self.decoder(z_q), vq_loss

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """Training loss: reconstruction MSE + codebook loss + β · commitment loss."""
        reconstruction, vq_loss = self(images)
        return F.mse_loss(reconstruction.float(), images.float()) + vq_loss.float()

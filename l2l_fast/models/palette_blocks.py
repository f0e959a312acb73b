"""Building blocks of the guided-diffusion UNet that Palette uses, with the same
submodule names (so official state dicts map key for key)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gamma_embedding(gammas: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of the noise level γ (cosines, then sines)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=gammas.device) / half)
    angles = gammas.float()[:, None] * freqs[None]
    embedding = torch.cat([angles.cos(), angles.sin()], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32, whatever the type of the input and of the weights
    (a teacher cast to bf16/fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    for param in module.parameters():
        nn.init.zeros_(param)
    return module


class EmbedSequential(nn.Sequential):
    """Sequential that hands the noise-level embedding to the blocks that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the γ embedding (FiLM scale/shift when
    `scale_shift`), optionally resampling by 2 (`up` / `down`)."""

    def __init__(self, channels: int, emb_dim: int, dropout: float, out_channel: int | None = None,
                 scale_shift: bool = True, up: bool = False, down: bool = False, groups: int = 32):
        super().__init__()
        out_channel = out_channel or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channel, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, (2 if scale_shift else 1) * out_channel))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channel), nn.SiLU(), nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channel, out_channel, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channel == channels else nn.Conv2d(channels, out_channel, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over positions; qkv laid out per head as guided-diffusion's
    legacy order ([q_h, k_h, v_h] for each head h in turn)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, groups: int = 32):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        self.num_heads = num_heads
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        x = x.reshape(batch, channels, -1)
        qkv = self.qkv(self.norm(x)).reshape(batch, self.num_heads, 3 * channels // self.num_heads, -1)
        q, k, v = qkv.transpose(-1, -2).chunk(3, dim=-1)  # [B, heads, T, ch] each
        h = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(batch, channels, -1)
        return (x + self.proj_out(h)).reshape(batch, channels, *spatial)

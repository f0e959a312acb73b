"""A Palette-style conditional diffusion model (Saharia et al., 2022) with the
guided-diffusion UNet of Janspiry/Palette-Image-to-Image-Diffusion-Models.

The denoiser takes concat(condition y_cond, noisy image y_t) on channels and the
noise level γ, and predicts ε. It splits into
- `encoder`: the γ embedding (`cond_embed`), `input_blocks` and `middle_block`;
  it returns every input block's output and the middle block's output, and the
  embedding the decoder needs;
- `decoder`: `output_blocks` and the `out` head, consuming those maps.

Images live in [-1, 1]. `keep` is a pixel mask broadcastable to the images
(bool or {0, 1}), 1 = known, 0 = the hole to fill.
"""
from __future__ import annotations

import copy
from functools import partial
from typing import Optional, Sequence

import torch
from torch import nn

from .diffusion_schedule import Schedule
from .palette_blocks import (
    AttentionBlock, Downsample, EmbedSequential, GroupNorm32, ResBlock, Upsample, gamma_embedding, zero_module,
)

# Palette's inpainting configs: trained on 2000 steps, sampled on another 1000.
PALETTE_SCHEDULE = {
    "train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 0.01},
    "test": {"schedule": "linear", "n_timestep": 1000, "linear_start": 1e-4, "linear_end": 0.09},
}
SAMPLERS = ("ddpm", "ddim")


class PaletteEncoder(nn.Module):
    def __init__(self, in_channel, inner_channel, channel_mults, res_blocks, attn_res, res_block, attention,
                 downsample):
        super().__init__()
        self.inner_channel = inner_channel
        emb_dim = 4 * inner_channel
        self.cond_embed = nn.Sequential(nn.Linear(inner_channel, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = channel_mults[0] * inner_channel
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channel, ch, 3, padding=1))])
        self.block_channels = [ch]
        rate = 1
        for level, mult in enumerate(channel_mults):
            for _ in range(res_blocks):
                layers = [res_block(ch, mult * inner_channel)]
                ch = mult * inner_channel
                if rate in attn_res:
                    layers.append(attention(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                self.block_channels.append(ch)
            if level != len(channel_mults) - 1:
                self.input_blocks.append(EmbedSequential(downsample(ch)))
                self.block_channels.append(ch)
                rate *= 2
        self.middle_block = EmbedSequential(res_block(ch, ch), attention(ch), res_block(ch, ch))

    def forward(self, x: torch.Tensor, gammas: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x [B, in_channel, H, W], gammas [B] -> (input-block maps + middle map, γ embedding)."""
        emb = self.cond_embed(gamma_embedding(gammas.reshape(-1), self.inner_channel))
        maps, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            maps.append(h)
        maps.append(self.middle_block(h, emb))
        return maps, emb


class PaletteDecoder(nn.Module):
    def __init__(self, block_channels, out_channel, inner_channel, channel_mults, res_blocks, attn_res, res_block,
                 attention, upsample, groups):
        super().__init__()
        skips, ch = list(block_channels), block_channels[-1]
        rate = 2 ** (len(channel_mults) - 1)
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(res_blocks + 1):
                layers = [res_block(ch + skips.pop(), mult * inner_channel)]
                ch = mult * inner_channel
                if rate in attn_res:
                    layers.append(attention(ch))
                if level and i == res_blocks:
                    layers.append(upsample(ch))
                    rate //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), zero_module(nn.Conv2d(ch, out_channel, 3, padding=1)))

    def forward(self, maps: Sequence[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        h = maps[-1]
        for block, skip in zip(self.output_blocks, reversed(maps[:-1])):
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device).to(x.device, x.dtype)


class PaletteUNet(nn.Module):
    """Conditional diffusion model: `encoder(x, γ)` -> (maps, emb), `decoder(maps, emb)` -> ε̂.

    Constructor arguments are those of Palette's `unet` and `beta_schedule` config
    entries, defaults those of its inpainting configs except dropout (off, so that
    unlearning steps depend on the seed alone); `attn_res` holds downsampling rates
    (1, 2, 4, ...) that get attention; a schedule without "test" samples on "train".
    """

    family = "diffusion"

    def __init__(
        self,
        image_size: int = 256,
        in_channel: int = 6,
        out_channel: int = 3,
        inner_channel: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        res_blocks: int = 2,
        attn_res: Sequence[int] = (16,),
        dropout: float = 0.0,
        num_heads: int = 1,
        num_head_channels: int = 32,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        conv_resample: bool = True,
        norm_groups: int = 32,
        beta_schedule: Optional[dict] = None,
    ):
        super().__init__()
        channel_mults, attn_res = [int(m) for m in channel_mults], [int(r) for r in attn_res]
        beta_schedule = copy.deepcopy(beta_schedule or PALETTE_SCHEDULE)
        if "train" not in beta_schedule:
            raise ValueError(f"beta_schedule needs a 'train' entry, got keys {sorted(beta_schedule)}")
        beta_schedule.setdefault("test", beta_schedule["train"])
        if in_channel != 2 * out_channel:
            raise ValueError(f"in_channel must be 2 * out_channel (condition + noisy image), got "
                             f"{in_channel} and {out_channel}")
        factor = 2 ** (len(channel_mults) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} must be a multiple of {factor} "
                             f"({len(channel_mults)} levels)")
        if any(m * inner_channel % norm_groups for m in channel_mults):
            raise ValueError(f"every level's channels (inner_channel * mult) must be a multiple of "
                             f"norm_groups {norm_groups}")
        self.config = dict(
            image_size=image_size, in_channel=in_channel, out_channel=out_channel, inner_channel=inner_channel,
            channel_mults=channel_mults, res_blocks=res_blocks, attn_res=attn_res, dropout=dropout,
            num_heads=num_heads, num_head_channels=num_head_channels, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, conv_resample=conv_resample, norm_groups=norm_groups,
            beta_schedule=beta_schedule,
        )
        self.image_size, self.out_channel = image_size, out_channel
        self.train_schedule = Schedule(**beta_schedule["train"])
        self.test_schedule = Schedule(**beta_schedule["test"])

        def res_block(channels, out_channel, **updown):
            return ResBlock(channels, 4 * inner_channel, dropout, out_channel, use_scale_shift_norm,
                            groups=norm_groups, **updown)

        attention = partial(AttentionBlock, num_heads=num_heads, num_head_channels=num_head_channels,
                            groups=norm_groups)
        if resblock_updown:
            downsample = partial(res_block, out_channel=None, down=True)
            upsample = partial(res_block, out_channel=None, up=True)
        else:
            downsample = partial(Downsample, use_conv=conv_resample)
            upsample = partial(Upsample, use_conv=conv_resample)
        self.encoder = PaletteEncoder(in_channel, inner_channel, channel_mults, res_blocks, attn_res, res_block,
                                      attention, downsample)
        self.decoder = PaletteDecoder(self.encoder.block_channels, out_channel, inner_channel, channel_mults,
                                      res_blocks, attn_res, res_block, attention, upsample, norm_groups)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.out_channel, self.image_size, self.image_size)

    def forward(self, x: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
        """Predicted noise ε̂ [B, out_channel, H, W] for x = concat(y_cond, y_t)."""
        return self.decoder(*self.encoder(x, gammas))

    def draw_gammas(self, batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Palette's training noise levels [B]: γ uniform between γ_{t-1} and γ_t, t ~ U{1..T-1}."""
        table = self.train_schedule.gammas
        t = torch.randint(1, len(table), (batch,), generator=generator)
        return table[t - 1] + (table[t] - table[t - 1]) * torch.rand(batch, generator=generator)

    @staticmethod
    def q_sample(y_0: torch.Tensor, gammas: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """y_t = √γ·y_0 + √(1−γ)·ε."""
        g = gammas.reshape(-1, 1, 1, 1).to(y_0.dtype)
        return g.sqrt() * y_0 + (1 - g).sqrt() * noise

    @staticmethod
    def condition(y_0: torch.Tensor, keep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Palette's y_cond: the image where known, Gaussian noise in the hole."""
        return torch.where(keep.bool(), y_0, noise)

    def unet_input(self, y_0, keep, gammas, noise, cond_noise, pure_noise=None) -> torch.Tensor:
        """concat(y_cond, y_t) with the known region of y_t clean, as Palette trains.
        pure_noise [B] bool: rows whose hole in y_t is ε alone (the y_0 term dropped)."""
        noisy = self.q_sample(y_0, gammas, noise)
        if pure_noise is not None:
            noisy = torch.where(pure_noise.reshape(-1, 1, 1, 1), noise, noisy)
        y_t = torch.where(keep.bool(), y_0, noisy)
        return torch.cat([self.condition(y_0, keep, cond_noise), y_t], dim=1)

    def loss(self, y_0, keep, gammas, noise, cond_noise) -> torch.Tensor:
        """ε-prediction MSE over the hole's elements."""
        predicted = self(self.unet_input(y_0, keep, gammas, noise, cond_noise), gammas)
        hole = (~keep.bool()).expand_as(noise)
        return (predicted.float() - noise.float())[hole].square().mean()

    @torch.no_grad()
    def sample(self, y_cond: torch.Tensor, y_0: torch.Tensor, keep: torch.Tensor, *, method: str = "ddim",
               steps: Optional[int] = None, eta: float = 0.0,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Fill the hole of y_0 by reverse diffusion on the test schedule, pasting the
        known region back at every step: DDPM over all steps, or DDIM over `steps`."""
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
        total = self.test_schedule.num_timesteps
        if method == "ddpm" and steps not in (None, total):
            raise ValueError(f"ddpm runs all {total} steps; use method='ddim' for steps={steps}")
        steps = total if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
            raise ValueError(f"steps must be an integer in [1, {total}], got {steps!r}")
        known = keep.bool()
        y_t = torch.where(known, y_0, _randn_like(y_0, generator))
        if method == "ddpm":
            timesteps = list(range(total - 1, -1, -1))
        else:
            timesteps = torch.linspace(total - 1, 0, steps).round().long().unique_consecutive().tolist()
        for i, t in enumerate(timesteps):
            if method == "ddpm":
                y_t = self._ddpm_step(y_cond, y_t, t, generator)
            else:
                prev = self.test_schedule.gammas[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
                y_t = self._ddim_step(y_cond, y_t, t, prev, eta, generator)
            y_t = torch.where(known, y_0, y_t)
        return y_t

    def _predict_start(self, y_cond, y_t, gamma: float) -> torch.Tensor:
        gammas = torch.full((y_t.shape[0],), gamma, device=y_t.device)
        eps = self(torch.cat([y_cond, y_t], dim=1), gammas).to(y_t.dtype)
        return ((y_t - (1 - gamma) ** 0.5 * eps) / gamma ** 0.5).clamp(-1, 1)

    def _ddpm_step(self, y_cond, y_t, t: int, generator) -> torch.Tensor:
        s = self.test_schedule
        y_0 = self._predict_start(y_cond, y_t, s.gammas[t].item())
        mean = s.mean_coef_y0[t].item() * y_0 + s.mean_coef_yt[t].item() * y_t
        if t == 0:
            return mean
        return mean + (0.5 * s.log_variance[t]).exp().item() * _randn_like(y_t, generator)

    def _ddim_step(self, y_cond, y_t, t: int, gamma_prev: float, eta: float, generator) -> torch.Tensor:
        gamma = self.test_schedule.gammas[t].item()
        y_0 = self._predict_start(y_cond, y_t, gamma)
        eps = (y_t - gamma ** 0.5 * y_0) / (1 - gamma) ** 0.5
        sigma = eta * ((1 - gamma_prev) / (1 - gamma) * (1 - gamma / gamma_prev)) ** 0.5
        y_prev = gamma_prev ** 0.5 * y_0 + max(1 - gamma_prev - sigma ** 2, 0.0) ** 0.5 * eps
        return y_prev + sigma * _randn_like(y_t, generator) if sigma > 0 else y_prev


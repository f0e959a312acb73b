"""The encoder half of a diffusers UNet, as a module of its own: the input conv, the
time embedding, the down blocks and the middle block (their parameters are the
UNet's own, shared). It returns what the up path would consume: every down-path
residual (the input conv's output first) and the middle block's output.

Its forward follows UNet2DConditionModel.forward / UNet2DModel.forward of diffusers
up to the up path, for the configurations without extra embeddings (no class,
addition or encoder-hidden-state projections: the Stable Diffusion 1.x/2.x UNets).
It never calls the UNet's methods, so a deep copy of it (the teacher) is
self-contained.
"""
from __future__ import annotations

import torch
from torch import nn

UNSUPPORTED_CONDITION_OPTIONS = ("class_embed_type", "addition_embed_type", "encoder_hid_dim_type", "num_class_embeds")


def _timesteps(timestep: torch.Tensor, batch: int, device) -> torch.Tensor:
    if timestep.dim() == 0:
        timestep = timestep[None]
    return timestep.to(device).expand(batch)


class UNetEncoder(nn.Module):
    """conv_in, time_proj/time_embedding, down_blocks and mid_block of a diffusers UNet
    (UNet2DConditionModel, or UNet2DModel with `conditional=False`)."""

    def __init__(self, unet: nn.Module, conditional: bool):
        super().__init__()
        config = unet.config
        if conditional:
            used = [name for name in UNSUPPORTED_CONDITION_OPTIONS if config.get(name) is not None]
            if used:
                raise ValueError(f"unet: configuration options {used} are not supported by the encoder split "
                                 "(the Stable Diffusion 1.x/2.x inpainting UNets have none)")
        elif getattr(unet, "class_embedding", None) is not None:
            raise ValueError("unet: class-conditional UNet2DModel (class_embed_type) is not supported")
        if any(hasattr(block, "skip_conv") for block in unet.down_blocks):
            raise ValueError("unet: skip down blocks (AttnSkipDownBlock2D/SkipDownBlock2D) are not supported")
        self.conditional = conditional
        self.center_input_sample = bool(config.center_input_sample)
        self.conv_in = unet.conv_in
        self.time_proj = unet.time_proj
        self.time_embedding = unet.time_embedding
        self.time_embed_act = getattr(unet, "time_embed_act", None)
        self.down_blocks = unet.down_blocks
        self.mid_block = unet.mid_block

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None) -> list[torch.Tensor]:
        if self.center_input_sample:
            sample = 2 * sample - 1.0
        t_emb = self.time_proj(_timesteps(timestep, sample.shape[0], sample.device))
        # as diffusers: the conditional UNet casts to the sample's type, UNet2DModel to its own
        t_emb = t_emb.to(sample.dtype if self.conditional else self.conv_in.weight.dtype)
        emb = self.time_embedding(t_emb)
        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)
        h = self.conv_in(sample)
        maps = [h]
        for block in self.down_blocks:
            if self.conditional and getattr(block, "has_cross_attention", False):
                h, residuals = block(hidden_states=h, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                h, residuals = block(hidden_states=h, temb=emb)
            maps.extend(residuals)
        if self.mid_block is not None:
            if self.conditional and getattr(self.mid_block, "has_cross_attention", False):
                h = self.mid_block(h, emb, encoder_hidden_states=encoder_hidden_states)
            else:
                h = self.mid_block(h, emb)
            maps.append(h)
        return maps


class DiffusersInpainter(nn.Module):
    """The modules of a diffusers inpainting model in one nn.Module (what `unlearn`
    moves, and what the baselines train): the UNet, and for Stable Diffusion the VAE
    and the text encoder. The pipeline holding them sees every change."""

    def __init__(self, unet: nn.Module, vae: nn.Module | None = None, text_encoder: nn.Module | None = None):
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder

"""Tiny diffusers models built from configs, offline (diffusers and transformers are imported
when one is built): shared by tests/conftest.py and benchmarks/bench_diffusers.py."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def write_char_tokenizer(folder) -> Path:
    """A CLIP BPE vocabulary of single letters and no merges (vocab.json, merges.txt)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tiny_inpaint_pipeline(tokenizer_dir, *, latent_size: int = 8, seed: int = 0, unet_channels=(8, 16),
                           vae_channels=(8, 16), text_width: int = 8):
    """A StableDiffusionInpaintPipeline with the SD-1.5 inpainting layout at toy width:
    image size latent_size · 2^(len(vae_channels) − 1)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=9, out_channels=4, layers_per_block=1,
        block_out_channels=tuple(unet_channels), norm_num_groups=min(unet_channels[0], 4),
        cross_attention_dim=text_width, attention_head_dim=2,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(unet_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(unet_channels) - 1) + ("UpBlock2D",))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(vae_channels),
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels), norm_num_groups=min(vae_channels[0], 4),
        layers_per_block=1, sample_size=latent_size * 2 ** (len(vae_channels) - 1))
    folder = write_char_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, num_train_timesteps=1000)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def palette_unet(image_size: int = 16, channels: int = 1, widths=(16, 32), seed: int = 0):
    """A Palette-style UNet2DModel: in_channels = 2 × channels (condition, noisy image)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    blocks = ("DownBlock2D",) * len(widths), ("UpBlock2D",) * len(widths)
    return UNet2DModel(sample_size=image_size, in_channels=2 * channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=tuple(widths), down_block_types=blocks[0], up_block_types=blocks[1],
                       norm_num_groups=min(widths[0], 8), attention_head_dim=8)

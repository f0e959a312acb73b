"""diffusers inpainting models: Stable Diffusion inpainting pipelines (a 9-channel
UNet2DConditionModel over VAE latents) and Palette-style UNet2DModel inpainters
(condition and noisy image concatenated on channels, in pixel space).

T is the patch mask plus a draw of the timestep t and the noise ε per sample (the
same for a sample's student and teacher inputs); E is the UNet's conv_in, time
embedding, down blocks and middle block (diffusers_encoders.UNetEncoder); D the up
path and conv_out. Frozen besides D: the VAE and the text encoder.

Stable Diffusion, as StableDiffusionInpaintPipeline reads its inputs: images in
[0, 1] go to [-1, 1]; the mask is 1 = repaint, nearest-resized to the latent grid;
the masked image is image · (mask < 0.5); latents are VAE means times the VAE's
scaling factor; the UNet input is cat(z_t, mask, masked-image latents), z_t =
√ᾱ_t·z_0 + √(1−ᾱ_t)·ε over the whole latent (as SD inpainting trains).
Palette-style: the UNet input is cat(y_cond, y_t), y_cond the image with ε_cond in
the hole, y_t the image where visible and √ᾱ_t·y_0 + √(1−ᾱ_t)·ε in the hole.

The forget target (the authors' Palette target): the teacher on y_t whose hole is
pure ε (the y_0 term dropped), conditioned on the real masked image — in latent
space for Stable Diffusion, in pixel space for the Palette-style model. The
Gaussian noise image n of the other families is not used.

On purpose unlike the pipeline: image latents are the VAE posterior's mean, not a
sample, so that a real image's latent is a frozen function of it (computed once per
run); generation, run by the pipeline itself, samples as the pipeline does.

The real rows a step prepares are [latents | pixels] per image (the pixels make the
masked image under each step's mask); the masked-image latents are computed once
per step and shared by the student and the teacher (kept on the step's corruption,
checked against its pixels).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..models.masks import default_patch_size, patch_keep, pixel_keep
from .base import Adapter
from .diffusers_encoders import DiffusersInpainter, UNetEncoder


def is_diffusers_object(obj) -> bool:
    """A diffusers pipeline or model (checked without importing diffusers)."""
    return type(obj).__module__.split(".")[0] == "diffusers"


@dataclass
class DiffusersCorruption:
    """Per sample: the patch mask, its pixel mask (1 = visible), the timestep, the noise ε
    (latent- or pixel-shaped) and the condition's hole noise (Palette-style only)."""

    keep: torch.Tensor        # [B, L] bool
    pixel: torch.Tensor       # [B, 1, H, W] float
    timesteps: torch.Tensor   # [B] long
    noise: torch.Tensor       # [B, c, h, w]
    cond_noise: Optional[torch.Tensor] = None  # [B, C, H, W]
    # the conditioning of the batch's real images, computed by the first encode with this
    # corruption and reused by later ones (a step's student and teacher share their real images)
    memo: Any = field(default=None, compare=False, repr=False)

    def __getitem__(self, index) -> "DiffusersCorruption":
        return DiffusersCorruption(*(None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                                     for f in fields(self) if f.name != "memo"))

    def to(self, device) -> "DiffusersCorruption":
        return DiffusersCorruption(*(None if getattr(self, f.name) is None
                                     else getattr(self, f.name).to(device, non_blocking=True)
                                     for f in fields(self) if f.name != "memo"))


@dataclass
class Rows:
    """Prepared rows: pixels in [0, 1], latents (zeros where not known yet) and which
    rows are forget targets (their y_t hole is pure ε)."""

    pixels: torch.Tensor
    latents: Optional[torch.Tensor]
    known: torch.Tensor   # [B] bool, on the host: latents computed
    forget: torch.Tensor  # [B] bool, on the host


class ForgetImages:
    """noise_input's result: the forget images, standing for their forget targets."""

    def __init__(self, images: torch.Tensor):
        self.images = images


def _alphas(scheduler, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scheduler.alphas_cumprod.to(like.device)[timesteps.to(like.device)].reshape(-1, 1, 1, 1).to(like.dtype)


def add_noise(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """√ᾱ_t·x_0 + √(1−ᾱ_t)·ε (the schedulers' add_noise, without moving their tables)."""
    alpha = _alphas(scheduler, timesteps, clean)
    return alpha.sqrt() * clean + (1 - alpha).sqrt() * noise


def training_target(scheduler, clean, noise, timesteps) -> torch.Tensor:
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        alpha = _alphas(scheduler, timesteps, clean)
        return alpha.sqrt() * noise - (1 - alpha).sqrt() * clean
    raise ValueError(f"scheduler: prediction_type {kind!r} is not supported (epsilon or v_prediction)")


class DiffusersAdapter(Adapter):
    """What both diffusers inpainters share: the patch mask, the timestep and noise draw,
    the encoder split, the prepared rows."""

    deterministic_corruption = False  # a fresh timestep and noise per sample and step

    def __init__(self, model: DiffusersInpainter, scheduler, encoder: UNetEncoder, image_shape, noise_shape,
                 patch_size: Optional[int], seed: int, patch_multiple: int = 1):
        self.model, self.scheduler, self.encoder = model, scheduler, encoder
        self.image_shape = tuple(image_shape)
        self.noise_shape = tuple(noise_shape)
        _, height, width = self.image_shape
        self.patch_size = patch_size or default_patch_size(height, patch_multiple)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide the image size {height}x{width}")
        self.grid = (height // self.patch_size, width // self.patch_size)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.seed = seed

    def blocks(self):
        return list(self.encoder.down_blocks)

    def draw(self, spec, batch, generator):
        keep = patch_keep(spec, self.grid, batch, generator)
        timesteps = torch.randint(0, self.num_train_timesteps, (batch,), generator=generator)
        noise = torch.randn(batch, *self.noise_shape, generator=generator)
        cond_noise = self._draw_cond_noise(batch, generator)
        return DiffusersCorruption(keep, pixel_keep(keep, self.grid, self.patch_size), timesteps, noise, cond_noise)

    def _draw_cond_noise(self, batch, generator):
        return None

    def pixel_keep(self, corruption):
        return corruption.pixel

    def noise_input(self, images, noise, corruption):
        return ForgetImages(images)

    def _check_images(self, images: torch.Tensor, corruption: DiffusersCorruption) -> None:
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images have shape {list(images.shape[1:])} (C, H, W) but the model takes "
                             f"{list(self.image_shape)}")
        mask = corruption.pixel
        if tuple(mask.shape[-2:]) != tuple(images.shape[-2:]) or mask.shape[0] != images.shape[0]:
            raise ValueError(f"corruption: its mask is {list(corruption.pixel.shape)} but the images are "
                             f"{list(images.shape)}; draw it with this adapter for this batch")

    def take(self, prepared, index):
        if isinstance(prepared, Rows):
            latents = None if prepared.latents is None else prepared.latents[index]
            host = index.cpu() if isinstance(index, torch.Tensor) else index
            return Rows(prepared.pixels[index], latents, prepared.known[host], prepared.forget[host])
        return prepared[index]

    def concat(self, first, second):
        a, b = self._rows(first), self._rows(second)
        if a.latents is None and b.latents is None:
            latents = None
        else:
            latents = torch.cat([self._latents_or_zeros(a), self._latents_or_zeros(b)])
        return Rows(torch.cat([a.pixels, b.pixels]), latents, torch.cat([a.known, b.known]),
                    torch.cat([a.forget, b.forget]))

    def _latents_or_zeros(self, rows: Rows) -> torch.Tensor:
        if rows.latents is not None:
            return rows.latents
        return rows.pixels.new_zeros((rows.pixels.shape[0], *self.noise_shape))

    def _rows(self, prepared) -> Rows:
        raise NotImplementedError


class StableDiffusionInpaintAdapter(DiffusersAdapter):
    """A StableDiffusionInpaintPipeline: encode in latent space, generate with the pipeline."""

    frozen_prepare = True  # the VAE is frozen: each real image's latents are computed once per run

    def __init__(self, pipe, *, prompt: Optional[str] = None, prompt_embeds: Optional[torch.Tensor] = None,
                 negative_prompt: Optional[str] = None, negative_prompt_embeds: Optional[torch.Tensor] = None,
                 patch_size: Optional[int] = None, image_size: Optional[int] = None,
                 num_inference_steps: int = 50, guidance_scale: float = 7.5, seed: int = 0):
        unet, vae = pipe.unet, pipe.vae
        latent_channels = int(vae.config.latent_channels)
        expected = 2 * latent_channels + 1
        if unet.config.in_channels != expected:
            raise ValueError(f"pipe: not an inpainting pipeline: its UNet takes {unet.config.in_channels} channels; "
                             f"an inpainting UNet takes {expected} (latents, mask, masked-image latents)")
        self.pipe = pipe
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        size = image_size or int(unet.config.sample_size) * self.vae_scale_factor
        if size % self.vae_scale_factor:
            raise ValueError(f"image_size {size} must be a multiple of the VAE's scale factor {self.vae_scale_factor}")
        latent = size // self.vae_scale_factor
        vae.requires_grad_(False)
        if getattr(pipe, "text_encoder", None) is not None:
            pipe.text_encoder.requires_grad_(False)
        model = DiffusersInpainter(unet, vae, getattr(pipe, "text_encoder", None))
        super().__init__(model, pipe.scheduler, UNetEncoder(unet, conditional=True), (3, size, size),
                         (latent_channels, latent, latent), patch_size, seed, patch_multiple=self.vae_scale_factor)
        if self.patch_size % self.vae_scale_factor:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of the VAE's scale factor "
                             f"{self.vae_scale_factor}, so that the hole is whole latent cells")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        self.num_inference_steps, self.guidance_scale = num_inference_steps, float(guidance_scale)
        self.prompt_embeds, self.negative_prompt_embeds = self._prompt(
            prompt, prompt_embeds, negative_prompt, negative_prompt_embeds)

    def _prompt(self, prompt, prompt_embeds, negative_prompt, negative_prompt_embeds):
        """[1, S, D] embeddings of the prompt (and of the negative prompt, for guidance), encoded once."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("prompt: Stable Diffusion inpainting needs exactly one of prompt= (a string; '' is the "
                             "unconditional prompt) or prompt_embeds= (a [1, S, D] tensor)")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        width = int(self.model.unet.config.cross_attention_dim)
        for name, value in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if value is not None and (not isinstance(value, torch.Tensor) or value.dim() != 3 or value.shape[0] != 1
                                      or value.shape[-1] != width):
                raise ValueError(f"{name} must be a [1, S, {width}] tensor, got "
                                 f"{list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
        guided = self.guidance_scale > 1.0
        if prompt_embeds is not None and (not guided or negative_prompt_embeds is not None):
            return prompt_embeds.detach(), None if negative_prompt_embeds is None else negative_prompt_embeds.detach()
        if getattr(self.pipe, "text_encoder", None) is None or getattr(self.pipe, "tokenizer", None) is None:
            raise ValueError("prompt: the pipeline has no text encoder and tokenizer; pass prompt_embeds= (and "
                             "negative_prompt_embeds= for guidance_scale > 1)")
        device = next(self.pipe.text_encoder.parameters()).device
        with torch.no_grad():
            positive, negative = self.pipe.encode_prompt(
                prompt, device, 1, guided, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_prompt_embeds)
        return positive.detach(), None if negative is None else negative.detach()

    # -- latents --------------------------------------------------------------------------------
    def vae_latents(self, images: torch.Tensor) -> torch.Tensor:
        """VAE posterior means of images in [-1, 1], times the scaling factor."""
        vae = self.model.vae
        with torch.no_grad():
            moments = vae.encode(images.to(vae.dtype)).latent_dist.mode()
        return moments * vae.config.scaling_factor

    def prepare(self, images):
        if isinstance(images, ForgetImages):
            pixels = images.images
            false = torch.zeros(pixels.shape[0], dtype=torch.bool)
            return Rows(pixels, None, false, ~false)
        latents = self.vae_latents(images * 2 - 1)
        return torch.cat([latents.flatten(1).to(images.dtype), images.flatten(1)], dim=1)

    def _rows(self, prepared) -> Rows:
        if isinstance(prepared, Rows):
            return prepared
        split = int(torch.Size(self.noise_shape).numel())
        batch = prepared.shape[0]
        true = torch.ones(batch, dtype=torch.bool)
        return Rows(prepared[:, split:].reshape(batch, *self.image_shape),
                    prepared[:, :split].reshape(batch, *self.noise_shape), true, ~true)

    def latent_mask(self, corruption: DiffusersCorruption) -> torch.Tensor:
        """The pipeline's mask on the latent grid: 1 = repaint, nearest-resized."""
        return F.interpolate(1 - corruption.pixel, size=self.noise_shape[1:])

    def _condition(self, pixels: torch.Tensor, corruption: DiffusersCorruption):
        """(latent mask, masked-image latents) of these real pixels under this corruption,
        and the pixels' own latents; computed once per corruption and pixels."""
        memo = corruption.memo
        # a step's teacher input holds the student's real rows: their conditioning is reused;
        # checked on the host only (a device comparison would wait for the device)
        if memo is not None and memo[0].shape == pixels.shape and (
                pixels.device.type != "cpu" or torch.equal(memo[0], pixels)):
            return memo
        c = corruption.to(pixels.device)
        mask = self.latent_mask(c).to(pixels.dtype)
        masked = (pixels * 2 - 1) * (1 - c.pixel.to(pixels.dtype) < 0.5)
        memo = (pixels, mask, self.vae_latents(masked).to(pixels.dtype), None)
        corruption.memo = memo
        return memo

    def _latents(self, rows: Rows, corruption: DiffusersCorruption, memo) -> torch.Tensor:
        if bool(rows.known.all()):
            return rows.latents
        if memo[3] is not None:
            known = memo[3]
        else:
            known = self.vae_latents(rows.pixels * 2 - 1).to(rows.pixels.dtype)
        if rows.latents is None:
            return known
        latents = torch.where(rows.known.to(known.device, non_blocking=True).reshape(-1, 1, 1, 1), rows.latents, known)
        return latents

    def encode(self, encoder, inputs, corruption):
        rows = self._rows(inputs)
        self._check_images(rows.pixels, corruption)
        memo = self._condition(rows.pixels, corruption)
        latents = self._latents(rows, corruption, memo)
        if rows.latents is not None and bool(rows.known.all()):
            corruption.memo = (*memo[:3], latents)  # the rows' latents, for a later pass on the same pixels
        _, mask, masked = memo[:3]
        c = corruption.to(latents.device)
        noise = c.noise.to(latents.dtype)
        noisy = add_noise(self.scheduler, latents, noise, c.timesteps)
        hole = (mask > 0.5) & rows.forget.to(latents.device, non_blocking=True).reshape(-1, 1, 1, 1)
        noisy = torch.where(hole, noise, noisy)
        sample = torch.cat([noisy, mask, masked], dim=1)
        states = self.prompt_embeds.to(sample.device).expand(sample.shape[0], -1, -1)
        return encoder(sample, c.timesteps, states)

    def generate(self, images, corruption):
        self._check_images(images, corruption)
        keep = corruption.pixel.to(images.device, images.dtype)
        pipe = self.pipe
        pipe.set_progress_bar_config(disable=True)
        batch = images.shape[0]
        negative = self.negative_prompt_embeds
        embeds_device = pipe.unet.device
        if negative is not None:
            negative = negative.to(embeds_device).expand(batch, -1, -1)
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        with torch.no_grad():
            out = pipe(prompt_embeds=self.prompt_embeds.to(embeds_device).expand(batch, -1, -1),
                       negative_prompt_embeds=negative,
                       image=images, mask_image=1 - keep, height=self.image_shape[1], width=self.image_shape[2],
                       num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                       generator=generator, output_type="pt").images
        return torch.where(keep.bool(), images, out.to(images.device, images.dtype))

    def task_loss(self, images, corruption, targets=None):
        """ε- (or v-) prediction MSE over the latent hole; with `targets`, the image's hole is theirs."""
        self._check_images(images, corruption)
        c = corruption.to(images.device)
        keep = c.pixel.to(images.dtype)
        filled = images if targets is None else torch.where(keep.bool(), images, targets)
        latents = self.vae_latents(filled * 2 - 1).to(images.dtype)
        mask = self.latent_mask(c).to(images.dtype)
        masked = self.vae_latents((images * 2 - 1) * (1 - keep < 0.5)).to(images.dtype)
        noise = c.noise.to(images.dtype)
        sample = torch.cat([add_noise(self.scheduler, latents, noise, c.timesteps), mask, masked], dim=1)
        states = self.prompt_embeds.to(sample.device).expand(sample.shape[0], -1, -1)
        predicted = self.model.unet(sample, c.timesteps, states).sample
        target = training_target(self.scheduler, latents, noise, c.timesteps)
        hole = (mask > 0.5).expand_as(target)
        return (predicted.float() - target.float())[hole].square().mean()


class PixelInpaintAdapter(DiffusersAdapter):
    """A Palette-style UNet2DModel (in_channels = 2 × image channels: y_cond, y_t) with a
    diffusers scheduler; generation runs that scheduler, pasting the known region back
    at every step as Palette does."""

    def __init__(self, unet, scheduler, *, patch_size: Optional[int] = None, num_inference_steps: int = 50,
                 seed: int = 0):
        channels = int(unet.config.out_channels)
        if unet.config.in_channels != 2 * channels:
            raise ValueError(f"unet: a Palette-style inpainter takes in_channels = 2 x out_channels (condition and "
                             f"noisy image), got {unet.config.in_channels} and {channels}")
        size = unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        super().__init__(DiffusersInpainter(unet), scheduler, UNetEncoder(unet, conditional=False),
                         (channels, height, width), (channels, height, width), patch_size, seed)
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        self.num_inference_steps = num_inference_steps

    def _draw_cond_noise(self, batch, generator):
        return torch.randn(batch, *self.image_shape, generator=generator)

    def prepare(self, images):
        if isinstance(images, ForgetImages):
            false = torch.zeros(images.images.shape[0], dtype=torch.bool)
            return Rows(images.images, None, false, ~false)
        return images

    def _rows(self, prepared) -> Rows:
        if isinstance(prepared, Rows):
            return prepared
        false = torch.zeros(prepared.shape[0], dtype=torch.bool)
        return Rows(prepared, None, false, false)

    def _inputs(self, images, corruption, forget=None):
        c = corruption.to(images.device)
        y_0 = images * 2 - 1
        known = c.pixel.bool()
        noise = c.noise.to(y_0.dtype)
        y_cond = torch.where(known, y_0, c.cond_noise.to(y_0.dtype))
        y_t = add_noise(self.scheduler, y_0, noise, c.timesteps)
        if forget is not None:
            y_t = torch.where(forget.to(y_0.device, non_blocking=True).reshape(-1, 1, 1, 1), noise, y_t)
        return torch.cat([y_cond, torch.where(known, y_0, y_t)], dim=1), c

    def encode(self, encoder, inputs, corruption):
        rows = self._rows(inputs)
        self._check_images(rows.pixels, corruption)
        sample, c = self._inputs(rows.pixels, corruption, rows.forget)
        return encoder(sample, c.timesteps)

    def generate(self, images, corruption):
        self._check_images(images, corruption)
        c = corruption.to(images.device)
        known = c.pixel.bool()
        y_0 = images * 2 - 1
        y_cond = torch.where(known, y_0, c.cond_noise.to(y_0.dtype))
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(self.num_inference_steps)
        generator = torch.Generator().manual_seed(self.seed)
        y_t = torch.randn(y_0.shape, generator=generator).to(y_0.device, y_0.dtype)
        y_t = torch.where(known, y_0, y_t)
        unet = self.model.unet
        with torch.no_grad():
            for t in scheduler.timesteps:
                predicted = unet(torch.cat([y_cond, y_t], dim=1), t.to(y_0.device)).sample
                y_t = scheduler.step(predicted, t, y_t, generator=generator).prev_sample.to(y_0.dtype)
                y_t = torch.where(known, y_0, y_t)
        return torch.where(known, images, ((y_t + 1) / 2).clamp(0, 1))

    def task_loss(self, images, corruption, targets=None):
        """ε- (or v-) prediction MSE in the hole; with `targets`, y_0 in the hole is theirs."""
        self._check_images(images, corruption)
        keep = corruption.pixel.to(images.device).bool()
        filled = images if targets is None else torch.where(keep, images, targets)
        sample, c = self._inputs(filled, corruption)
        predicted = self.model.unet(sample, c.timesteps).sample
        target = training_target(self.scheduler, filled * 2 - 1, c.noise.to(images.dtype), c.timesteps)
        hole = (~keep).expand_as(target)
        return (predicted.float() - target.float())[hole].square().mean()


def adapt_diffusers(pipe_or_unet, *, scheduler=None, **options) -> DiffusersAdapter:
    """An adapter for a diffusers inpainting model.

    - a StableDiffusionInpaintPipeline (or any pipeline with a 9-channel
      UNet2DConditionModel, a VAE and a scheduler): options prompt= or prompt_embeds=
      (one is required; '' is the unconditional prompt), negative_prompt= /
      negative_prompt_embeds=, num_inference_steps (50), guidance_scale (7.5), seed (0),
      patch_size (image size / 7 or else / 8, a multiple of the VAE's scale factor: SD's
      512 px gives 64; masks.default_patch_size), image_size
      (default: the UNet's sample_size times the VAE's scale factor);
    - a Palette-style UNet2DModel (in_channels = 2 × image channels), or a pipeline
      holding one as `unet`: its scheduler (`scheduler=`, or the pipeline's; default a
      DDPMScheduler of 1000 steps); options patch_size (image size / 7 or else / 8),
      num_inference_steps (50), seed.
    """
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    kind = type(unet).__name__
    if kind == "UNet2DConditionModel" or hasattr(getattr(unet, "config", None), "cross_attention_dim"):
        if unet is pipe_or_unet or getattr(pipe_or_unet, "vae", None) is None:
            raise TypeError("pipe_or_unet: a UNet2DConditionModel is adapted through its pipeline "
                            "(StableDiffusionInpaintPipeline: UNet, VAE, scheduler, text encoder)")
        if scheduler is not None:
            raise ValueError("scheduler: a pipeline brings its own scheduler")
        return StableDiffusionInpaintAdapter(pipe_or_unet, **options)
    if kind == "UNet2DModel":
        if scheduler is None:
            scheduler = getattr(pipe_or_unet, "scheduler", None)
        if scheduler is None:
            from diffusers import DDPMScheduler
            scheduler = DDPMScheduler(num_train_timesteps=1000)
        return PixelInpaintAdapter(unet, scheduler, **options)
    raise TypeError(f"pipe_or_unet: expected a StableDiffusionInpaintPipeline or a diffusers UNet2DModel, "
                    f"got {type(pipe_or_unet).__name__}")

"""`unlearn`: tune only the encoder so that forget images embed like Gaussian noise
and retain images embed as before (DESIGN §1)."""
from __future__ import annotations

import numbers
from typing import Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .adapters import Adapter, adapter_for
from .data.source import EpochSampler, ImageSource
from .masks import parse_mask
from .objectives import per_sample_distance, sample_weights
from .ops._checks import DISTANCES, STATS
from .optim import WEIGHT_DECAY, adamw, set_lr, warmup_cosine
from .targets import frozen_teacher, noise_images, teacher_targets


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient stopped being finite; the model keeps its last finite step."""


def _check_number(value, name: str, minimum: float, integer: bool = False, strict: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")


def _default_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def unlearn(
    model: nn.Module,
    forget,
    retain,
    *,
    alpha: float = 0.25,
    steps: int,
    batch_size: int,
    lr: Optional[float] = None,
    mask: str = "inpaint:3",
    seed: int = 0,
    device=None,
    distance: str = "mse",
    noise_stats: str = "batch",
    noise_clamp: Optional[tuple[float, float]] = None,
    warmup_steps: Optional[int] = None,
    weight_decay: float = WEIGHT_DECAY,
    grad_clip: Optional[float] = 3.0,
    adapter: Optional[Adapter] = None,
    progress: bool = True,
    callback: Optional[Callable[[dict], None]] = None,
) -> nn.Module:
    """Unlearn `forget` from `model` while keeping `retain`; returns the same model.

    forget, retain: image tensors [N, C, H, W] or map-style datasets of images or
    (image, label) pairs. Each step draws `batch_size` forget and `batch_size`
    retain images. lr defaults to 1e-4 * (2 * batch_size) / 256. `callback`, if
    given, receives {step, loss, retain, forget, lr} after every step.
    """
    adapter = adapter_for(model, adapter)
    forget_source = ImageSource(forget, "forget")
    retain_source = ImageSource(retain, "retain")
    _check_number(alpha, "alpha", 0.0)
    _check_number(steps, "steps", 1, integer=True)
    _check_number(batch_size, "batch_size", 1, integer=True)
    spec = parse_mask(mask, "mask")
    if lr is None:
        lr = 1e-4 * (2 * batch_size) / 256
    _check_number(lr, "lr", 0.0, strict=True)
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if noise_stats not in STATS:
        raise ValueError(f"noise_stats must be one of {STATS}, got {noise_stats!r}")
    for source in (forget_source, retain_source):
        if source.image_shape != tuple(adapter.image_shape):
            raise ValueError(
                f"{source.name} images have shape {list(source.image_shape)} (C, H, W) but the "
                f"model takes {list(adapter.image_shape)}"
            )
    if warmup_steps is None:
        warmup_steps = max(1, steps // 20)

    device = torch.device(device) if device is not None else _default_device(model)
    was_training = model.training
    model.to(device)
    encoder = adapter.encoder
    teacher = frozen_teacher(encoder)
    optimizer = adamw(encoder.named_parameters(), lr, weight_decay)
    trainable = [p for p in encoder.parameters() if p.requires_grad]

    generator = torch.Generator().manual_seed(seed)
    forget_sampler = EpochSampler(len(forget_source), batch_size, generator)
    retain_sampler = EpochSampler(len(retain_source), batch_size, generator)
    weights = sample_weights(batch_size, batch_size, alpha, device)
    noise_numel = batch_size * int(torch.Size(adapter.image_shape).numel())

    encoder.train()
    bar = tqdm(range(steps), desc="unlearn", disable=not progress)
    try:
        for step in bar:
            step_lr = lr * warmup_cosine(step, steps, warmup_steps)
            set_lr(optimizer, step_lr)
            retain_images = retain_source.batch(retain_sampler.next()).to(device)
            forget_images = forget_source.batch(forget_sampler.next()).to(device)
            corruption = adapter.draw(spec, 2 * batch_size, generator)
            forget_corruption = adapter.select(corruption, slice(batch_size, None))
            keep = adapter.noise_keep(forget_corruption)
            noise = noise_images(
                forget_images, seed=seed, offset=step * noise_numel, stats=noise_stats,
                clamp=noise_clamp, keep=None if keep is None else keep.to(device, forget_images.dtype),
            )
            real = adapter.prepare(torch.cat([retain_images, forget_images]))
            noise = adapter.prepare(adapter.noise_input(forget_images, noise, forget_corruption))
            target = teacher_targets(adapter, teacher, adapter.take(real, slice(0, batch_size)), noise, corruption)
            student = adapter.encode(encoder, real, corruption)
            per_sample = per_sample_distance(student, target, weights, distance)
            loss = per_sample.sum()
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at step {step}; "
                                         f"the model keeps its weights from step {step - 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trainable, grad_clip if grad_clip else float("inf"))
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"non-finite gradient at step {step}; "
                                         f"the model keeps its weights from step {step - 1}")
            optimizer.step()
            retain_term = per_sample[:batch_size].sum().item()
            forget_term = per_sample[batch_size:].sum().item() / alpha if alpha > 0 else float("nan")
            bar.set_postfix(retain=f"{retain_term:.4f}", forget=f"{forget_term:.4f}")
            if callback is not None:
                callback({"step": step, "loss": loss.item(), "retain": retain_term,
                          "forget": forget_term, "lr": step_lr})
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return model

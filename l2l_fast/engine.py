"""`unlearn`: tune only the encoder so that forget images embed like Gaussian noise
and retain images embed as before (DESIGN §1), or run one of the paper's baselines."""
from __future__ import annotations

import copy
import numbers
from typing import Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .adapters import Adapter, adapter_for
from .data.source import EpochSampler, ImageSource
from . import objectives
from .masks import parse_mask
from .objectives import ENCODER_METHODS, METHODS, StepInputs
from .ops._checks import DISTANCES, STATS
from .optim import WEIGHT_DECAY, adamw, set_lr, warmup_cosine
from .targets import frozen_teacher


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
    method: str = "ours",
    adapter: Optional[Adapter] = None,
    progress: bool = True,
    callback: Optional[Callable[[dict], None]] = None,
) -> nn.Module:
    """Unlearn `forget` from `model` while keeping `retain`; returns the same model.

    forget, retain: image tensors [N, C, H, W] or map-style datasets of images or
    (image, label) pairs. Each step draws `batch_size` forget and `batch_size`
    retain images. lr defaults to 1e-4 * (2 * batch_size) / 256. `callback`, if
    given, receives {step, loss, retain, forget, lr} after every step.

    method: "ours" (the paper's encoder-space objective) or a baseline of the
    paper: "max_loss", "noisy_label", "retain_label" (whole model, the family's
    own loss) or "random_encoder" (encoder only, Gaussian embedding targets).
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
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
    step_loss, trainable_module = _method_step(method, model, adapter)
    optimizer = adamw(trainable_module.named_parameters(), lr, weight_decay)
    trainable = [p for p in trainable_module.parameters() if p.requires_grad]

    generator = torch.Generator().manual_seed(seed)
    forget_sampler = EpochSampler(len(forget_source), batch_size, generator)
    retain_sampler = EpochSampler(len(retain_source), batch_size, generator)
    noise_numel = batch_size * int(torch.Size(adapter.image_shape).numel())

    trainable_module.train()
    bar = tqdm(range(steps), desc=f"unlearn ({method})", disable=not progress)
    try:
        for step in bar:
            step_lr = lr * warmup_cosine(step, steps, warmup_steps)
            set_lr(optimizer, step_lr)
            inputs = StepInputs(
                adapter=adapter,
                retain=retain_source.batch(retain_sampler.next()).to(device),
                forget=forget_source.batch(forget_sampler.next()).to(device),
                corruption=adapter.draw(spec, 2 * batch_size, generator),
                alpha=float(alpha), distance=distance, noise_seed=seed,
                noise_offset=step * noise_numel, noise_stats=noise_stats, noise_clamp=noise_clamp,
            )
            loss, retain_term, forget_term = step_loss(inputs)
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
            record = {"step": step, "loss": loss.item(), "retain": retain_term.item(),
                      "forget": forget_term.item(), "lr": step_lr}
            bar.set_postfix(retain=f"{record['retain']:.4f}", forget=f"{record['forget']:.4f}")
            if callback is not None:
                callback(record)
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return model


def _method_step(method: str, model: nn.Module, adapter: Adapter):
    """(step -> (loss, retain term, forget term), the module whose parameters train)."""
    if method in ENCODER_METHODS:
        teacher = frozen_teacher(adapter.encoder)
        function = objectives.ours if method == "ours" else objectives.random_encoder
        return (lambda inputs: function(inputs, adapter.encoder, teacher)), adapter.encoder
    if method == "retain_label":
        original = copy.copy(adapter)
        original.model = copy.deepcopy(model).eval().requires_grad_(False)
        return (lambda inputs: objectives.retain_label(inputs, original)), model
    function = objectives.max_loss if method == "max_loss" else objectives.noisy_label
    return function, model

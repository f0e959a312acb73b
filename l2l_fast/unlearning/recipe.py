"""`unlearn`: tune only the encoder so that forget images embed like Gaussian noise
and retain images embed as before (DESIGN §1), or run one of the paper's baselines."""
from __future__ import annotations

import copy
import functools
import json
import numbers
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ..training import distributed, checkpointing as run_state
from . import objectives
from ..adapters import Adapter, adapter_for
from ..data.source import ImageSource
from ..models.masks import MaskSpec, parse_mask
from .objectives import ENCODER_METHODS, METHODS, StepInputs
from ..ops._checks import DISTANCES, STATS
from ..training.optim import WEIGHT_DECAY, adamw, set_lr, warmup_cosine
from .caches import SampleCache
from ..training.monitor import NonFiniteLossError, StepMonitor
from ..training.step import TrainStep, checkpointed


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
    log_every: Optional[int] = None,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: Optional[int] = None,
    resume_from: Optional[str] = None,
    fsdp: bool = False,
    precision: Optional[str] = None,
    checkpoint_activations: bool = False,
    cache_targets: bool = False,
    compile: bool = False,
) -> nn.Module:
    """Unlearn `forget` from `model` while keeping `retain`; returns the same model.

    forget, retain: image tensors [N, C, H, W] or map-style datasets of images or
    (image, label) pairs. Each step draws `batch_size` forget and `batch_size`
    retain images. lr defaults to 1e-4 * (2 * batch_size) / 256. `callback`, if
    given, receives {step, loss, retain, forget, lr} of every step, in order, each
    time the step values are read: every `log_every` steps (default 1 on the CPU,
    20 on a GPU, where a read waits for the device), at checkpoints and at the end.
    A non-finite loss stops the updates on the device at once and raises
    NonFiniteLossError, naming the step, at the next read.

    method: "ours" (the paper's encoder-space objective) or a baseline of the
    paper: "max_loss", "noisy_label", "retain_label" (whole model, the family's
    own loss) or "random_encoder" (encoder only, Gaussian embedding targets).

    Several processes (torchrun, or any initialised process group): `batch_size`
    is the global batch, split evenly across the processes, which give the same
    result as one process up to fp32 rounding. The encoder is wrapped in DDP, or
    with `fsdp=True` sharded with FSDP2 (encoder methods); whole-model baselines
    average their gradients directly. Only rank 0 shows progress; `callback` runs
    on every rank with the same (all-rank) record.

    Checkpoints: with `checkpoint_dir`, the run's state is written there every
    `checkpoint_every` steps (default: a tenth of the run) and at the end (see
    run_state). `resume_from`, a checkpoint folder, continues from its newest
    intact checkpoint (bit for bit on the CPU) and keeps writing there unless
    `checkpoint_dir` says otherwise; pass the original model, as at the start.

    Speed: `precision` "bf16" | "fp16" | "fp32" (default bf16 on CUDA GPUs that
    support it, else fp32) runs the student under autocast and the teacher with its
    weights cast once to that type; fp16 uses a gradient scaler; the losses are
    accumulated in fp32 by the fused operators. `checkpoint_activations` recomputes
    the encoder blocks' activations in the backward instead of keeping them.
    `cache_targets` computes each retain sample's teacher embedding once (method
    "ours" with a fixed mask, e.g. "inpaint:K", and a family whose corruption is
    deterministic). `compile` runs the student encoder through torch.compile.
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
    device_type = torch.device(device).type if device is not None else _default_device(model).type
    if log_every is None:
        log_every = 1 if device_type == "cpu" else 20
    _check_number(log_every, "log_every", 1, integer=True)
    precision = _check_precision(precision, device_type)
    if cache_targets and not (method == "ours" and adapter.fixed_targets(spec)):
        raise ValueError("cache_targets needs method 'ours', a fixed mask (inpaint:K or outpaint:K) and a "
                         f"family with a deterministic corruption; got method {method!r}, mask {str(spec)!r}, "
                         f"{type(adapter).__name__}")
    if checkpoint_activations and not adapter.blocks():
        raise ValueError(f"checkpoint_activations: {type(adapter).__name__} names no encoder blocks to checkpoint")
    if fsdp and method not in ENCODER_METHODS:
        raise ValueError(f"fsdp shards the encoder: it applies to methods {ENCODER_METHODS}, not {method!r}")
    checkpoint_dir, checkpoint_every = _checkpoint_options(checkpoint_dir, checkpoint_every, resume_from, steps)
    arguments = dict(alpha=alpha, steps=steps, batch_size=batch_size, lr=lr, mask=str(spec), seed=seed,
                     distance=distance, noise_stats=noise_stats, noise_clamp=noise_clamp,
                     warmup_steps=warmup_steps, weight_decay=weight_decay, grad_clip=grad_clip, method=method,
                     precision=precision)
    run = _Run(adapter, forget_source, retain_source, spec, arguments, progress, callback, log_every,
               checkpoint_dir, checkpoint_every, resume_from, fsdp,
               _Speed(checkpoint_activations, cache_targets, compile))

    ctx, device = distributed.setup(torch.device(device) if device is not None else _default_device(model))
    was_training = model.training
    try:
        distributed.local_batch(ctx, batch_size)
        run.train(model, ctx, device)
    finally:
        model.train(was_training)
        distributed.teardown(ctx)
    return model


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _check_precision(precision: Optional[str], device_type: str) -> str:
    if precision is None:
        cuda_bf16 = device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass
class _Speed:
    checkpoint_activations: bool = False
    cache_targets: bool = False
    compile: bool = False


def _checkpoint_options(checkpoint_dir, checkpoint_every, resume_from, steps: int):
    """(folder to write checkpoints to or None, steps between checkpoints)."""
    if checkpoint_dir is None:
        checkpoint_dir = resume_from
    if checkpoint_every is not None:
        _check_number(checkpoint_every, "checkpoint_every", 1, integer=True)
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
    if checkpoint_dir is not None and resume_from is None and run_state.existing(checkpoint_dir):
        raise ValueError(f"checkpoint_dir {str(checkpoint_dir)!r} already holds checkpoints (newest: step "
                         f"{run_state.existing(checkpoint_dir)[-1]}); pass resume_from to continue that run "
                         "or choose an empty folder")
    return checkpoint_dir, checkpoint_every or max(1, steps // 10)


@dataclass
class _Run:
    """One call of `unlearn` once its arguments are checked; `args` shape the result
    and are recorded in the checkpoints."""

    adapter: Adapter
    forget: ImageSource
    retain: ImageSource
    spec: MaskSpec
    args: dict
    progress: bool
    callback: Optional[Callable[[dict], None]]
    log_every: int
    checkpoint_dir: Optional[str]
    checkpoint_every: int
    resume_from: Optional[str]
    fsdp: bool
    speed: _Speed

    def train(self, model: nn.Module, ctx: distributed.Context, device: torch.device) -> None:
        adapter, method, args = self.adapter, self.args["method"], self.args
        model.to(device)
        trainable_module = adapter.encoder if method in ENCODER_METHODS else model
        state = run_state.resume(ctx, self.resume_from) if self.resume_from is not None else None
        recorded = json.loads(json.dumps(args, default=str))
        original = run_state.digest(trainable_module.state_dict()) if self.checkpoint_dir is not None else None
        if state is not None:
            run_state.check_resumable(state, recorded, original)
        reference = _frozen_reference(method, model, adapter)
        dtype = PRECISIONS[args["precision"]]
        if method in ENCODER_METHODS and dtype != torch.float32:
            reference.to(dtype)
        if state is not None:
            trainable_module.load_state_dict(state.section("trainable."))
        sharded = self.fsdp and ctx.enabled
        if sharded:
            student = distributed.fully_shard_module(copy.deepcopy(adapter.encoder), device)
            reference = distributed.fully_shard_module(reference, device)
            trainable_module = student
        elif method in ENCODER_METHODS:
            student = distributed.wrap_ddp(ctx, adapter.encoder, device)
        else:
            student = None
        if self.speed.compile and student is not None:
            student = torch.compile(student)
        cache = SampleCache(len(self.retain)) if self.speed.cache_targets else None
        step_loss = _step_function(method, adapter, student, reference, cache)
        optimizer = adamw(trainable_module.named_parameters(), args["lr"], args["weight_decay"])
        scaler = _grad_scaler(device, enabled=args["precision"] == "fp16")
        generator = torch.Generator().manual_seed(args["seed"])
        samplers = {"forget": run_state.Sampler(len(self.forget), args["batch_size"], generator),
                    "retain": run_state.Sampler(len(self.retain), args["batch_size"], generator)}
        if state is not None:
            run_state.restore(state, ctx, optimizer=optimizer, scaler=scaler, generator=generator,
                              samplers=samplers, device=device)

        def save(done: int) -> None:
            run_state.write(ctx, self.checkpoint_dir, done, module=trainable_module, optimizer=optimizer,
                            scaler=scaler, generator=generator, samplers=samplers, device=device,
                            meta={"arguments": recorded, "original_sha256": original})

        trainable = [p for p in trainable_module.parameters() if p.requires_grad]
        train_step = TrainStep(step_loss, optimizer, scaler, trainable, args["grad_clip"],
                               PRECISIONS[args["precision"]], ctx,
                               average_gradients=ctx.enabled and method not in ENCODER_METHODS)
        trainable_module.train()
        blocks = adapter.blocks() if self.speed.checkpoint_activations else []
        try:
            with checkpointed(blocks):
                self._loop(ctx, device, 0 if state is None else state.step, train_step, generator, samplers, save)
        except NonFiniteLossError:
            if sharded:
                adapter.encoder.load_state_dict(distributed.full_state(student))
            raise
        finally:
            optimizer.zero_grad(set_to_none=True)
        if sharded:
            adapter.encoder.load_state_dict(distributed.full_state(student))

    def _loop(self, ctx, device, start, train_step, generator, samplers, save) -> None:
        adapter, args, method = self.adapter, self.args, self.args["method"]
        steps, batch_size = args["steps"], args["batch_size"]
        local = distributed.local_batch(ctx, batch_size)
        shard = slice(ctx.rank * local, (ctx.rank + 1) * local)
        rows = distributed.shard_rows(ctx, batch_size)
        image_numel = int(torch.Size(adapter.image_shape).numel())
        inputs_type = StepInputs
        if ctx.enabled:
            inputs_type = functools.partial(distributed.ShardInputs, world_size=ctx.world_size)
        monitor = StepMonitor(ctx, device, self.log_every)
        prepared = None
        if adapter.frozen_prepare and method in ENCODER_METHODS:
            prepared = {"retain": SampleCache(len(self.retain)), "forget": SampleCache(len(self.forget))}
        bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"unlearn ({method})",
                   disable=not self.progress or not ctx.is_main)

        def deliver(record: dict) -> None:
            bar.set_postfix(retain=f"{record['retain']:.4f}", forget=f"{record['forget']:.4f}", refresh=False)
            if self.callback is not None:
                self.callback(record)

        for step in bar:
            step_lr = args["lr"] * warmup_cosine(step, steps, args["warmup_steps"])
            set_lr(train_step.optimizer, step_lr)
            retain_index, forget_index = samplers["retain"].next(), samplers["forget"].next()
            corruption = adapter.draw(self.spec, 2 * batch_size, generator)
            if ctx.enabled:
                retain_index, forget_index = retain_index[shard], forget_index[shard]
                corruption = adapter.select(corruption, rows)
            inputs = inputs_type(
                adapter=adapter,
                retain=_to_device(self.retain.batch(retain_index), device),
                forget=_to_device(self.forget.batch(forget_index), device),
                corruption=corruption,
                alpha=float(args["alpha"]), distance=args["distance"], noise_seed=args["seed"],
                noise_offset=(step * batch_size + shard.start) * image_numel, noise_stats=args["noise_stats"],
                noise_clamp=args["noise_clamp"], retain_index=retain_index, forget_index=forget_index,
                prepared=prepared,
            )
            train_step(monitor, step, step_lr, inputs)
            done = step + 1
            checkpoint = self.checkpoint_dir is not None and (done % self.checkpoint_every == 0 or done == steps)
            if checkpoint or monitor.due(step) or done == steps:
                monitor.read(deliver)
            if checkpoint:
                save(done)


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device`; to a GPU through pinned memory, without waiting for it."""
    if device.type != "cuda":
        return images.to(device)
    return images.pin_memory().to(device, non_blocking=True)


def _grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type, enabled=enabled)


def _frozen_reference(method: str, model: nn.Module, adapter: Adapter):
    """What the loss compares against, copied before any weight changes: the teacher
    (encoder methods), the original model (retain_label), or nothing."""
    if method in ENCODER_METHODS:
        return frozen_teacher(adapter.encoder)
    if method == "retain_label":
        original = copy.copy(adapter)
        original.model = copy.deepcopy(model).eval().requires_grad_(False)
        return original
    return None


def _step_function(method: str, adapter: Adapter, student: Optional[nn.Module], reference, cache=None):
    """step inputs -> (loss, retain term, forget term)."""
    if method == "ours":
        return lambda inputs: objectives.ours(inputs, student, reference, cache)
    if method == "random_encoder":
        return lambda inputs: objectives.random_encoder(inputs, student, reference)
    if method == "retain_label":
        return lambda inputs: objectives.retain_label(inputs, reference)
    return objectives.max_loss if method == "max_loss" else objectives.noisy_label


def frozen_teacher(encoder: nn.Module) -> nn.Module:
    """A copy of the encoder alone, in eval mode, without gradients."""
    teacher = copy.deepcopy(encoder).eval()
    teacher.requires_grad_(False)
    return teacher

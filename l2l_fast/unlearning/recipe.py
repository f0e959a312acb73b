"""`unlearn` and the run behind it: tune only the encoder so that forget images embed
like Gaussian noise and retain images embed as before (DESIGN §1), or run one of the
paper's baselines.

UnlearnRecipe is one run: `setup()` builds the teacher, the student, the optimizer,
the samplers and the state (resumed from a checkpoint when asked); `train()` runs the
loop; `close()` gives back the global RNG and the process group. `unlearn` is these
three calls; the benchmarks build the same recipe.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ..adapters import Adapter, adapter_for
from ..data.folders import FileImages
from ..data.loader import Plan, StepFeed
from ..data.source import ImageSource
from ..models.masks import parse_mask
from ..training import checkpointing, distributed, interrupts
from ..training.checkpointing import Sampler
from ..training.monitor import NonFiniteLossError, StepMonitor
from ..training.optim import adamw, set_lr, warmup_cosine
from ..training.seeding import rank_seed, seeded_global_rng
from ..training.step import TrainStep, checkpointed
from .caches import SampleCache, load_rows, probe_embedding, save_rows, targets_cacheable
from .config import PRECISIONS, UnlearnConfig
from .objectives import OBJECTIVES, StepModels, check_forget_maps
from .retain_check import RetainCheck, default_holdout, split_holdout
from .step_data import StepInputs

log = logging.getLogger(__name__)
__all__ = ["unlearn", "UnlearnRecipe", "UnlearnConfig", "NonFiniteLossError", "frozen_teacher"]


def unlearn(model: nn.Module, forget, retain, *, adapter: Optional[Adapter] = None,
            callback: Optional[Callable[[dict], None]] = None, config: Optional[UnlearnConfig] = None,
            **options) -> nn.Module:
    """Unlearn `forget` from `model` while keeping `retain`; returns the same model.

    model: an nn.Module, or a diffusers pipeline (with `adapter=l2l_fast.adapt_diffusers(pipe, ...)`
    for Stable Diffusion, which needs a prompt).

    forget, retain: image tensors [N, C, H, W] or map-style datasets of images or
    (image, label) pairs. `options` are the fields of UnlearnConfig (`steps` and
    `batch_size` are required; see `UnlearnConfig.docs()`), or pass `config=`.
    Each step draws `batch_size` forget and `batch_size` retain images.

    `callback`, if given, receives {step, loss, retain, forget, lr} of every step, in
    order, each time the step values are read: every `log_every` steps, at
    checkpoints and at the end. A non-finite loss stops the updates on the device at
    once and raises NonFiniteLossError, naming the step, at the next read.

    `seed` fixes the whole run: batches, corruptions, the noise, and torch's global
    RNG (dropout and any other global draw of the model), which is seeded from it for
    the run and given back to the caller afterwards; run checkpoints keep its state,
    so a resumed run repeats an uninterrupted one bit for bit on the CPU. Under
    torchrun each rank seeds its global RNG with its own seed derived from `seed`.

    Several processes (torchrun, or any initialised process group): `batch_size` is
    the global batch, split evenly across the processes, which give the same result
    as one process up to fp32 rounding. The encoder is wrapped in DDP, or with
    `fsdp=True` sharded with FSDP2; whole-model baselines average their gradients
    directly. Only rank 0 shows progress; `callback` runs on every rank with the same
    (all-rank) record.
    """
    if config is None:
        config = UnlearnConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)
    given = model
    if not isinstance(model, nn.Module):  # a diffusers pipeline: its adapter holds the modules
        adapter = adapter_for(model, adapter)
        model = adapter.model
    recipe = UnlearnRecipe(model, forget, retain, config, adapter=adapter, callback=callback)
    was_training = model.training
    try:
        recipe.setup()
        recipe.train()
    finally:
        model.train(was_training)
        recipe.close()
        # The recipe's reference cycles hold the DDP wrapper and through it the process group:
        # freed here, the group's threads end now. Left to interpreter shutdown, they aborted
        # a process now and then ("terminate called without an active exception") after a run
        # that had succeeded.
        del recipe
        gc.collect()
    return given


def frozen_teacher(encoder: nn.Module) -> nn.Module:
    """A copy of the encoder alone, in eval mode, without gradients."""
    teacher = copy.deepcopy(encoder).eval()
    teacher.requires_grad_(False)
    return teacher


def _default_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


class UnlearnRecipe:
    def __init__(self, model: nn.Module, forget, retain, config: UnlearnConfig, *,
                 adapter: Optional[Adapter] = None, callback: Optional[Callable[[dict], None]] = None):
        """Checks everything that can be checked before any work: the data against the
        model, the mask against its grid, the options against its family."""
        self.model, self.callback = model, callback
        self.adapter = adapter_for(model, adapter)
        self.forget, self.retain = ImageSource(forget, "forget"), ImageSource(retain, "retain")
        self.device = torch.device(config.device) if config.device is not None else _default_device(model)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r}: no CUDA GPU is available here")
        bf16 = self.device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        config = config.resolved(self.device.type, bf16)
        holdout = config.retain_holdout
        if holdout is None:
            holdout = default_holdout(len(self.retain)) if config.retain_budget is not None else 0
        self.config = dataclasses.replace(config, retain_holdout=holdout)
        self.spec = parse_mask(self.config.mask)
        self.objective = OBJECTIVES[self.config.method]
        self._check()
        self._exit = contextlib.ExitStack()

    def _check(self) -> None:
        config, adapter = self.config, self.adapter
        if config.retain_budget is not None and config.fsdp and distributed.launched().enabled:
            raise ValueError("retain_budget checks the unsharded model: it does not combine with fsdp (use DDP)")
        if config.retain_holdout >= len(self.retain):
            raise ValueError(f"retain_holdout {config.retain_holdout} leaves none of the retain set's "
                             f"{len(self.retain)} images to train on")
        for source in (self.forget, self.retain):
            if source.image_shape != tuple(adapter.image_shape):
                raise ValueError(f"{source.name} images have shape {list(source.image_shape)} (C, H, W) but the "
                                 f"model takes {list(adapter.image_shape)}")
            size = len(source) - (config.retain_holdout if source is self.retain else 0)
            if config.batch_size > size and not config.repeat_samples:
                held = f" (after the {config.retain_holdout} held out)" if size < len(source) else ""
                raise ValueError(f"batch_size {config.batch_size} is above the {source.name} set's {size} images"
                                 f"{held}: a step would repeat images; lower it, or set repeat_samples")
        try:
            adapter.draw(self.spec, 1, torch.Generator().manual_seed(0))
        except ValueError as error:
            message = str(error).replace(f"mask {self.spec} ", "", 1)
            raise ValueError(f"mask {config.mask!r}: {message}") from error
        if config.cache_targets and not adapter.fixed_targets(self.spec):
            raise ValueError("cache_targets needs a fixed mask (inpaint:K, outpaint:K or box:...) and a family with "
                             f"a deterministic corruption; got mask {config.mask!r}, {type(adapter).__name__}")
        if config.checkpoint_activations and not adapter.blocks():
            raise ValueError(f"checkpoint_activations: {type(adapter).__name__} names no encoder blocks to checkpoint")
        if config.resume_from is None and config.checkpoint_dir is not None:
            found = checkpointing.existing(config.checkpoint_dir)
            if found:
                raise ValueError(f"checkpoint_dir {config.checkpoint_dir!r} already holds checkpoints (newest: "
                                 f"step {found[-1]}); pass resume_from to continue that run or choose an empty folder")

    def setup(self) -> None:
        config, adapter, model = self.config, self.adapter, self.model
        self.ctx, self.device = distributed.setup(self.device)
        ctx, device = self.ctx, self.device
        self._exit.callback(distributed.teardown, ctx)
        self.local_batch = distributed.local_batch(ctx, config.batch_size)
        self._exit.enter_context(seeded_global_rng(rank_seed(config.seed, ctx.rank), device))
        model.to(device)
        encoder_only = self.objective.encoder_only
        trainable_module = adapter.encoder if encoder_only else model
        state = checkpointing.resume(ctx, config.resume_from) if config.resume_from is not None else None
        self.original = checkpointing.digest(trainable_module.state_dict()) if config.checkpoint_dir else None
        if state is not None:
            checkpointing.check_resumable(state, config.recorded(), self.original)
        reference = self._frozen_reference()
        if config.forget_maps is not None:  # before any work: the teacher's maps on one probe image
            check_forget_maps(config.forget_maps, probe_embedding(adapter, reference, self.spec, device,
                                                                  PRECISIONS[config.precision]))
        if state is not None:
            trainable_module.load_state_dict(state.section("trainable."))

        self.sharded = config.fsdp and ctx.enabled
        if config.checkpoint_activations:
            self._exit.enter_context(checkpointed(adapter.encoder, adapter.blocks()))
        student = None
        if self.sharded:
            student = distributed.fully_shard_module(copy.deepcopy(adapter.encoder), device)
            reference = distributed.fully_shard_module(reference, device)
            trainable_module = student
        elif encoder_only:
            student = distributed.wrap_ddp(ctx, adapter.encoder, device)
        if config.compile and student is not None:
            student = torch.compile(student)
        self.student, self.trainable_module = student, trainable_module

        cache_targets = config.cache_targets
        if cache_targets is None:  # on without being asked wherever a target cannot change
            cache_targets = (config.method == "ours" and adapter.fixed_targets(self.spec)
                             and targets_cacheable(adapter, reference, self.spec, device,
                                                   PRECISIONS[config.precision]))
        cache = SampleCache(len(self.retain)) if cache_targets else None
        models = StepModels(student=student, reference=reference, cache=cache)
        self.optimizer = adamw(trainable_module.named_parameters(), config.lr, config.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        self.generator = torch.Generator().manual_seed(config.seed)
        self.retain_rows, holdout = split_holdout(len(self.retain), config.retain_holdout, config.seed)
        self.samplers = {"forget": Sampler(len(self.forget), config.batch_size, self.generator),
                         "retain": Sampler(len(self.retain_rows), config.batch_size, self.generator)}
        self.start = 0
        if state is not None:
            checkpointing.restore(state, ctx, optimizer=self.optimizer, scaler=self.scaler,
                                  generator=self.generator, samplers=self.samplers, device=device)
            self.start = state.step
        self.feed = self._feed()
        trainable = [p for p in trainable_module.parameters() if p.requires_grad]
        self.train_step = TrainStep(lambda inputs: self.objective.loss(inputs, models), self.optimizer, self.scaler,
                                    trainable, config.grad_clip, PRECISIONS[config.precision], device.type, ctx,
                                    average_gradients=ctx.enabled and not encoder_only)
        self.monitor = StepMonitor(ctx, device, config.log_every)
        self.prepared = None
        if adapter.frozen_prepare and encoder_only:
            self.prepared = {"retain": SampleCache(len(self.retain)), "forget": SampleCache(len(self.forget))}
        self.caches = {**({"targets": cache} if cache is not None else {}),
                       **{f"prepared.{name}": c for name, c in (self.prepared or {}).items()}}
        if config.checkpoint_dir is not None:
            self._restore_cached_rows(state)
        self.check, self.budget_message = None, None
        if config.retain_holdout:
            self.check = RetainCheck(adapter, trainable_module, self.retain, self.forget, holdout, spec=self.spec,
                                     alpha=config.alpha, budget=config.retain_budget, every=config.check_every,
                                     seed=config.seed, device=device, ctx=ctx)
            if state is None:
                self.check.start()
            else:
                self.check.load_state(state.meta["retain_check"], state.section("budget_best."))

    def _restore_cached_rows(self, state) -> None:
        """The cached rows the run had at the checkpoint resumed from (none on a fresh start):
        recomputing them would round differently (caches.py)."""
        folder = Path(self.config.checkpoint_dir)
        if state is None:
            load_rows(folder, 0, self.ctx.rank, {}, self.device)  # deletes another run's files
            return
        load_rows(state.path.parent, state.step, self.ctx.rank, self.caches, self.device)
        if folder.resolve() == state.path.parent.resolve():
            for cache in self.caches.values():
                cache.unsaved.clear()

    def _frozen_reference(self):
        """What the loss compares against, copied before any weight changes: the teacher
        (encoder methods, cast to the step's precision), the original model, or nothing."""
        if self.objective.reference == "teacher":
            teacher = frozen_teacher(self.adapter.encoder)
            return teacher.to(PRECISIONS[self.config.precision])
        if self.objective.reference == "original":
            original = copy.copy(self.adapter)
            original.model = copy.deepcopy(self.model).eval().requires_grad_(False)
            return original
        return None

    def _feed(self) -> StepFeed:
        """The step images: decode caches opened for the file-based sets, then the loader."""
        config = self.config
        for source in (self.retain, self.forget):
            if isinstance(source.data, FileImages):
                source.data.use_cache(config.decode_cache, config.cache_dir)
        feed = StepFeed({"retain": self.retain, "forget": self.forget}, self._draw, start=self.start,
                        steps=config.steps, device=self.device, num_workers=config.num_workers,
                        prefetch=config.prefetch, max_bad_fraction=config.max_bad_fraction)
        self._exit.callback(feed.close)
        return feed

    def _draw(self, step: int) -> Plan:
        """Step `step`'s indices and corruptions, drawn for the global batch from the shared
        generator (in step order, ahead of the step when workers prefetch), this rank's
        shard of them; when the run checkpoints, the generator's and samplers' states after them."""
        config, adapter, ctx = self.config, self.adapter, self.ctx
        batch, local = config.batch_size, self.local_batch
        retain_index, forget_index = self.retain_rows[self.samplers["retain"].next()], self.samplers["forget"].next()
        corruption = adapter.draw(self.spec, 2 * batch, self.generator)
        state = None
        if config.checkpoint_dir is not None:  # any step may save: at its schedule or on an interrupt
            state = {"generator": self.generator.get_state(),
                     "samplers": {name: s.state() for name, s in self.samplers.items()}}
        if ctx.enabled:
            shard = slice(ctx.rank * local, (ctx.rank + 1) * local)
            retain_index, forget_index = retain_index[shard], forget_index[shard]
            corruption = adapter.select(corruption, distributed.shard_rows(ctx, batch))
        return Plan(step, {"retain": retain_index, "forget": forget_index}, corruption, state)

    def inputs(self, step: int) -> StepInputs:
        """The next step's data on this rank (step `step`: its noise offset), from the feed."""
        config, adapter, ctx = self.config, self.adapter, self.ctx
        plan, images = self.feed.next()
        self.plan = plan
        image_numel = int(torch.Size(adapter.image_shape).numel())
        noise_clamp = adapter.noise_clamp if config.noise_clamp is None else config.noise_clamp
        return StepInputs(
            adapter=adapter, retain=images["retain"], forget=images["forget"],
            corruption=plan.corruption, alpha=config.alpha if self.check is None else self.check.alpha,
            distance=config.distance, noise_seed=config.seed,
            noise_offset=(step * config.batch_size + ctx.rank * self.local_batch) * image_numel,
            noise_stats=config.noise_stats, noise_clamp=noise_clamp, retain_index=plan.index["retain"],
            forget_index=plan.index["forget"], prepared=self.prepared, ctx=ctx,
            diffusion_target=config.diffusion_target, forget_maps=config.forget_maps,
        )

    def train(self) -> nn.Module:
        config, ctx = self.config, self.ctx
        steps = config.steps
        self.trainable_module.train()
        bar = tqdm(range(self.start, steps), initial=self.start, total=steps, desc=f"unlearn ({config.method})",
                   disable=not config.progress or not ctx.is_main)

        def deliver(record: dict) -> None:
            extra = {"bad_files": self.feed.bad_count} if self.feed.bad_count else {}
            if self.check is not None and self.check.history:
                extra["retain_damage"] = f"{self.check.history[-1].damage:+.1%}"
            bar.set_postfix(retain=f"{record['retain']:.4f}", forget=f"{record['forget']:.4f}", **extra, refresh=False)
            if self.callback is not None:
                self.callback(record)

        saving = config.checkpoint_dir is not None
        schedule = checkpointing.Schedule(ctx, steps, config.checkpoint_every, self.start, self.device)
        # under several processes a signal is not agreed on at a step boundary: it stops the run at once
        waiting = contextlib.nullcontext() if ctx.enabled else interrupts.deferred()
        try:
            with waiting:
                for step in bar:
                    step_lr = config.lr * warmup_cosine(step, steps, config.warmup_steps)
                    if self.check is not None:
                        step_lr *= self.check.step_scale
                    set_lr(self.optimizer, step_lr)
                    self.train_step(self.monitor, step, step_lr, self.inputs(step))
                    done = step + 1
                    if self.check is not None and self.check.due(done, steps):
                        self.check.check(done)
                    stop = interrupts.pending() if not ctx.enabled else None
                    checkpoint = saving and (schedule.due(done) or stop is not None)
                    if checkpoint or stop is not None or self.monitor.due(step) or done == steps:
                        self.monitor.read(deliver)
                    saved = self.save(done) if checkpoint else None
                    if stop is not None and done < steps:
                        bar.close()
                        raise interrupts.Interrupted(stop, done, steps, saved and str(saved))
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            if self.sharded:
                self.adapter.encoder.load_state_dict(distributed.full_state(self.student))
        if self.check is not None:
            self.budget_message = self.check.finish()
        return self.model

    def save(self, done: int) -> Path:
        """The run after `done` steps (its path, logged); the generator and samplers as they were right after that
        step's draws (the loader may have drawn later steps already)."""
        ahead = self.generator.get_state(), {name: s.state() for name, s in self.samplers.items()}
        self.generator.set_state(self.plan.state["generator"])
        for name, sampler in self.samplers.items():
            sampler.load_state(self.plan.state["samplers"][name])
        try:
            save_rows(self.config.checkpoint_dir, done, self.ctx.rank, self.caches)
            check_meta, check_tensors = self.check.state() if self.check is not None else ({}, {})
            path = checkpointing.write(self.ctx, self.config.checkpoint_dir, done, module=self.trainable_module,
                                optimizer=self.optimizer, scaler=self.scaler, generator=self.generator,
                                samplers=self.samplers, device=self.device, extra=check_tensors,
                                meta={"arguments": self.config.recorded(), "original_sha256": self.original,
                                      "bad_files": {k: sorted(v.values()) for k, v in self.feed.bad.items()},
                                      **({"retain_check": check_meta} if self.check is not None else {})})
        finally:
            self.generator.set_state(ahead[0])
            for name, sampler in self.samplers.items():
                sampler.load_state(ahead[1][name])
        log.info("saved the run at step %d of %d to %s", done, self.config.steps, path)
        return path

    def close(self) -> None:
        """Unwrap checkpointed blocks, give back the caller's global RNG, end the process group."""
        self._exit.close()

"""Run checkpoints of `unlearn`: all a killed run needs to continue bit for bit.

    <dir>/step-00000012.safetensors  tensors: trainable weights, optimizer state, the
                                     generator and per-rank RNG states, the samplers'
                                     remaining orders; JSON metadata: step, arguments,
                                     optimizer param groups, the gradient scaler's state
                                     (fp16), the original weights' digest
    <dir>/step-00000012.json         {"step", "file", "bytes", "sha256"}, written last

Both files are written atomically (temporary file, fsync, rename) by rank 0; the
sidecar commits the checkpoint. The newest KEEP checkpoints are kept. Loading
checks the size and SHA-256 first and falls back to the previous checkpoint with
a warning; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..data.source import EpochSampler
from .files import read, save_tensors, write_text
from . import distributed

log = logging.getLogger(__name__)
KEEP = 2
_NAME = re.compile(r"^step-(\d{8})\.(json|safetensors)$")


class CheckpointError(RuntimeError):
    """No usable run checkpoint where one was expected."""


@dataclass
class RunState:
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict
    path: Path

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def _paths(directory: Path, step: int) -> tuple[Path, Path]:
    stem = directory / f"step-{step:08d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _steps(directory: Path, suffix: str) -> list[int]:
    if not directory.is_dir():
        return []
    found = (_NAME.match(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m and m.group(2) == suffix)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def existing(directory) -> list[int]:
    """Steps of the committed checkpoints (with a sidecar) in `directory`."""
    return _steps(Path(directory), "json")


def save(directory, step: int, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write the checkpoint of `step` and drop all but the newest KEEP up to it."""
    directory = Path(directory)
    data, sidecar = _paths(directory, step)
    save_tensors(tensors, {**meta, "step": step}, data)
    record = {"step": step, "file": data.name, "bytes": data.stat().st_size, "sha256": sha256(data)}
    write_text(json.dumps(record), sidecar)
    _prune(directory, step)
    return data


def _prune(directory: Path, newest: int) -> None:
    kept = [s for s in existing(directory) if s <= newest][-KEEP:]
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        stale_tmp = path.name.startswith(".step-") and path.name.endswith(".tmp")
        if stale_tmp or (match and int(match.group(1)) not in kept):
            path.unlink(missing_ok=True)


def _problem(directory: Path, step: int) -> Optional[str]:
    data, sidecar = _paths(directory, step)
    try:
        record = json.loads(sidecar.read_text())
        expected_size, expected_digest = int(record["bytes"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable sidecar {sidecar.name}: {error}"
    if not data.is_file():
        return f"{data.name} is missing"
    size = data.stat().st_size
    if size != expected_size:
        return f"{data.name} has {size} bytes, expected {expected_size} (truncated?)"
    if sha256(data) != expected_digest:
        return f"{data.name} fails its SHA-256 check (corrupt)"
    return None


def _read(directory: Path, step: int) -> RunState:
    data, _ = _paths(directory, step)
    try:
        tensors, meta = read(data)
    except Exception as error:  # safetensors raises its own error types on a bad header
        raise CheckpointError(f"{data}: cannot be read: {error}") from error
    return RunState(step, tensors, meta, data)


def choose(directory) -> Optional[int]:
    """The newest step whose checkpoint is intact; None when there is none at all.

    Each unusable newer checkpoint is logged; CheckpointError if all are unusable."""
    directory = Path(directory)
    steps = existing(directory)
    problems = []
    for step in reversed(steps):
        problem = _problem(directory, step)
        if problem is None:
            if problems:
                log.warning("resuming from the previous good checkpoint, step %d", step)
            return step
        log.warning("checkpoint step %d in %s is unusable: %s", step, directory, problem)
        problems.append(f"step {step}: {problem}")
    if problems:
        raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(problems))
    return None


def load(directory, step: int) -> RunState:
    """The checkpoint of `step`, checked again (every rank reads it)."""
    directory = Path(directory)
    problem = _problem(directory, step)
    if problem is not None:
        raise CheckpointError(f"checkpoint step {step} in {directory}: {problem}")
    return _read(directory, step)


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        hasher.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


class Sampler(EpochSampler):
    """An EpochSampler whose position (the rest of its current order) is saved."""

    def state(self) -> torch.Tensor:
        return self._order.clone()

    def load_state(self, order: torch.Tensor) -> None:
        self._order = order.to(torch.long).clone()


class Schedule:
    """Which steps save: every `every` steps when given; else every N steps, N chosen once from the
    step time measured over the first MEASURED steps after the first (rank 0's, shared), so that
    a save comes about every SAVE_SECONDS of work and at least every tenth of the run:
    N = clamp(round(SAVE_SECONDS / step time), 1, steps // 10). The last step always saves."""

    SAVE_SECONDS, MEASURED = 120.0, 3

    def __init__(self, ctx: distributed.Context, steps: int, every: Optional[int], start: int, device: torch.device):
        self.ctx, self.steps, self.device = ctx, steps, device
        self.tenth = max(1, steps // 10)
        self.every, self.measured = every or self.tenth, every is not None
        self.first, self.clock = start + 1, None

    def due(self, done: int) -> bool:
        if not self.measured and done == self.first:
            self.clock = time.perf_counter()
        elif not self.measured and done == self.first + self.MEASURED:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            step_time = (time.perf_counter() - self.clock) / self.MEASURED
            every = min(self.tenth, max(1, round(self.SAVE_SECONDS / max(step_time, 1e-9))))
            self.every, self.measured = distributed.broadcast_int(self.ctx, every), True
            log.info("a step takes %.3g s: saving the run every %d steps", step_time, self.every)
        return done % self.every == 0 or done == self.steps


def write(ctx: distributed.Context, directory, step: int, *, module: nn.Module, optimizer,
          scaler: torch.amp.GradScaler, generator: torch.Generator, samplers: dict[str, Sampler], meta: dict,
          device: torch.device, extra: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """Gather the run's state on every rank; rank 0 writes it (with the `extra` tensors of rank 0); all
    wait for the write. Returns its path."""
    weights = distributed.full_state(module)
    optim, optim_meta = optimizer_tensors(optimizer)
    optim = {k: distributed.full(v) for k, v in optim.items()}
    rng = {"cpu": distributed.gather_states(ctx, torch.get_rng_state())}
    if device.type == "cuda":
        rng["cuda"] = distributed.gather_states(ctx, torch.cuda.get_rng_state(device))
    if ctx.is_main:
        tensors = {f"trainable.{k}": v for k, v in weights.items()}
        tensors.update(optim, generator=generator.get_state(), **(extra or {}))
        tensors.update({f"sampler.{name}": s.state() for name, s in samplers.items()})
        tensors.update({f"rng.{kind}.{rank}": s for kind, states in rng.items() for rank, s in enumerate(states)})
        save(directory, step, tensors, {**meta, "optimizer": optim_meta, "grad_scaler": scaler.state_dict(),
                                        "world_size": ctx.world_size})
    distributed.barrier(ctx)
    return _paths(Path(directory), step)[0]


def resume(ctx: distributed.Context, directory) -> Optional[RunState]:
    """The newest intact checkpoint in `directory`, chosen by rank 0 and read by every rank;
    None when the folder holds none (the run starts at step 0)."""
    step, problem = -1, None
    if ctx.is_main:
        try:
            chosen = choose(directory)
            step = -1 if chosen is None else chosen
        except CheckpointError as error:
            step, problem = -2, error
    step = distributed.broadcast_int(ctx, step)
    if step == -2:
        raise problem or CheckpointError(f"rank 0 found no usable checkpoint in {directory}")
    if step == -1:
        log.warning("no checkpoint in %s; starting from step 0", directory)
        return None
    state = load(directory, step)
    log.info("resuming from %s (step %d)", state.path, step)
    return state


def check_resumable(state: RunState, arguments: dict, original: str) -> None:
    """ValueError unless the checkpoint was written by the same run of the same model."""
    saved = state.meta.get("arguments", {})
    changed = [f"{k}={saved.get(k)!r} there, {v!r} here" for k, v in arguments.items() if saved.get(k) != v]
    if changed:
        raise ValueError(f"resume_from: {state.path} belongs to a run with other arguments: " + ", ".join(changed))
    if state.meta.get("original_sha256") != original:
        raise ValueError(f"resume_from: {state.path} was written for another model; resume with the "
                         "original (not yet unlearned) model, whose encoder is the teacher")


def restore(state: RunState, ctx: distributed.Context, *, optimizer, scaler: torch.amp.GradScaler,
            generator: torch.Generator, samplers: dict[str, Sampler], device: torch.device) -> None:
    """Optimizer, gradient scaler, generator, sampler and RNG states (the weights are loaded
    before wrapping)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    tensors = {}
    for key, value in state.section("optimizer.").items():
        index = int(key.split(".", 1)[0])
        tensors[f"optimizer.{key}"] = distributed.shard_like(value, params[index])
    restore_optimizer(optimizer, tensors, state.meta["optimizer"])
    if state.meta.get("grad_scaler"):
        scaler.load_state_dict(state.meta["grad_scaler"])
    generator.set_state(state.tensors["generator"])
    for name, sampler in samplers.items():
        sampler.load_state(state.tensors[f"sampler.{name}"])
    if state.meta.get("world_size") != ctx.world_size:
        log.warning("%s was written by %s processes, this run has %d: the global RNG states are not restored",
                    state.path, state.meta.get("world_size"), ctx.world_size)
        return
    torch.set_rng_state(state.tensors[f"rng.cpu.{ctx.rank}"])
    if device.type == "cuda" and f"rng.cuda.{ctx.rank}" in state.tensors:
        torch.cuda.set_rng_state(state.tensors[f"rng.cuda.{ctx.rank}"], device)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

"""Data-parallel unlearning on torch.distributed (torchrun's RANK / WORLD_SIZE).

Every rank draws the same global batch (indices and corruptions) from the shared
seeded generator and keeps its shard: rows [rank * b, (rank + 1) * b) of the
retain and of the forget half, b = batch_size / world_size. The per-sample
weights are then world_size times the global ones (1/b instead of 1/batch_size)
and gradients are averaged across ranks, which sums to the global gradient.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)
TEARDOWN_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    created: bool = False  # this process group was started by `setup` and is ended by `teardown`

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> Context:
    """This process's place in its launch (an initialised process group, else torchrun's
    RANK / WORLD_SIZE), without joining anything."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    return Context(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group of this launch (nccl on CUDA, gloo on CPU), if any.

    A CUDA device without an index becomes cuda:LOCAL_RANK."""
    if dist.is_available() and dist.is_initialized():
        rank, world, created = dist.get_rank(), dist.get_world_size(), False
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Context(), device
        rank, created = int(os.environ["RANK"]), True
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world, created), device


def teardown(ctx: Context, timeout: timedelta = TEARDOWN_TIMEOUT) -> None:
    """End the process group `setup` started: the ranks meet first, so that none closes its
    connections while another still uses them (gloo aborts a process whose peer is gone
    mid-operation: 'terminate called without an active exception'); the meeting waits at
    most `timeout`, so a rank whose peer failed ends too."""
    if ctx.created and dist.is_initialized():
        finish(timeout)


def finish(timeout: timedelta = TEARDOWN_TIMEOUT) -> None:
    """Meet the other ranks, then destroy the default process group. A rank that has exited
    fails the meeting at once; one that is alive but elsewhere for `timeout` leaves the
    group as it is (destroying it would wait for that rank's answer)."""
    start = time.monotonic()
    try:
        dist.barrier(async_op=True).wait(timeout=timeout)
    except RuntimeError as error:
        waited = time.monotonic() - start
        if waited >= timeout.total_seconds():
            log.warning("the other ranks did not meet at the end of the run within %.0f s; leaving the process "
                        "group without ending it", waited)
            return
        log.warning("the other ranks did not meet at the end of the run (%s); ending the process group", error)
    dist.destroy_process_group()


def local_batch(ctx: Context, batch_size: int) -> int:
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes "
                         f"({ctx.world_size}): it is the global batch, split across them")
    return batch_size // ctx.world_size


def shard_rows(ctx: Context, batch_size: int) -> torch.Tensor:
    """This rank's rows of a [retain; forget] batch of 2 * batch_size corruptions."""
    local = local_batch(ctx, batch_size)
    own = torch.arange(ctx.rank * local, (ctx.rank + 1) * local)
    return torch.cat([own, own + batch_size])


def average_gradients(ctx: Context, params) -> None:
    """All-reduce-average gradients of modules not wrapped in DDP or FSDP."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for work in [dist.all_reduce(g, async_op=True) for g in grads]:
        work.wait()
    for grad in grads:
        grad.div_(ctx.world_size)


def all_reduce_sum(ctx: Context, tensor: torch.Tensor) -> None:
    """Sum `tensor` across the ranks, in place."""
    if ctx.enabled:
        dist.all_reduce(tensor)


def gather_states(ctx: Context, state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor (RNG states, step records), on the CPU."""
    if not ctx.enabled:
        return [state]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else state.device
    parts = [torch.empty_like(state, device=device) for _ in range(ctx.world_size)]
    dist.all_gather(parts, state.to(device))
    return [p.cpu() for p in parts]


def broadcast_int(ctx: Context, value: int) -> int:
    if not ctx.enabled:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, 0)
    return int(tensor.item())


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def wrap_ddp(ctx: Context, module: nn.Module, device: torch.device) -> nn.Module:
    """DDP over `module` (the encoder); the same module when there is one process."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def fully_shard_module(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` under FSDP2 (in place): each nn.ModuleList item, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    units = [m for parent in module.modules() if isinstance(parent, nn.ModuleList) for m in parent]
    for unit in reversed(units):
        fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a collective); any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def shard_like(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`tensor` (whole, the same on every rank) laid out like the DTensor `reference`."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(reference, DTensor) or tensor.shape != reference.shape:
        return tensor
    return distribute_tensor(tensor.to(reference.device), reference.device_mesh, reference.placements,
                             src_data_rank=None)


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: full(v).detach() for k, v in module.state_dict().items()}

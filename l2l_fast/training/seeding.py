"""The global torch RNG of a run: forked from the caller's, seeded from the run's seed,
and given back afterwards."""
from __future__ import annotations

import contextlib
import hashlib

import torch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one process of a run: `seed` itself on rank 0, a derived one elsewhere."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}".encode()).digest()[:8], "little") >> 1


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """Inside, torch's global CPU generator (and that of `device`, if a CUDA device)
    starts from `seed` (dropout and other global draws of the model repeat); the
    caller's states are restored on the way out."""
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield

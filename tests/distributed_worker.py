"""One process of a run started by tests/test_distributed.py:

    python distributed_worker.py SCENARIO OUT_DIR

RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the environment, as
torchrun sets them. Results go to OUT_DIR as safetensors and JSON.
"""
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import l2l_fast  # noqa: E402
from l2l_fast.training import distributed  # noqa: E402
from conftest import CASES, FORGET, RETAIN, RUN, run_case, tiny_model, unlearn_kind  # noqa: E402

def save_result(out: Path, name: str, model, log) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / f"{name}.safetensors")
    (out / f"{name}.json").write_text(json.dumps(log))


def equivalence(out: Path) -> None:
    """Every case; then ddp and fsdp again, checkpointed, their last checkpoint
    removed and the run resumed from step 3."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for name in CASES:
        log = []
        model = run_case(name, log.append)
        if rank == 0:
            save_result(out, name, model, log)
    for name in ("ddp", "fsdp"):
        folder = out / f"{name}_checkpoints"
        kind, kwargs = CASES[name]
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, checkpoint_dir=str(folder), checkpoint_every=3, **kwargs)
        if rank == 0:
            for path in folder.glob("step-00000005.*"):
                path.unlink()
        dist.barrier()
        log = []
        model = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, resume_from=str(folder), callback=log.append,
                                 checkpoint_every=3, **kwargs)
        if rank == 0:
            save_result(out, f"{name}_resumed", model, log)
    distributed.finish()


def non_finite(out: Path) -> None:
    """rank 1's retain images turn to NaN after step 1; batch_size 3 does not split in 2."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    messages = {}
    try:
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **dict(RUN, batch_size=3))
    except ValueError as error:
        messages["batch_size"] = str(error)
    retain = RETAIN.clone()

    def poison(record):
        if record["step"] == 1 and rank == 1:
            retain[:] = float("nan")

    try:
        l2l_fast.unlearn(tiny_model(), FORGET, retain, callback=poison, **RUN)
    except l2l_fast.NonFiniteLossError as error:
        messages["non_finite"] = str(error)
    (out / f"rank{rank}.json").write_text(json.dumps(messages))
    distributed.finish()


def slow_checkpointed(out: Path, kind: str = "mae") -> None:
    """One process, a checkpoint every step, slow enough to be killed part-way."""
    kwargs = dict(CASES["ddp"][1], steps=12, checkpoint_dir=str(out / "checkpoints"), checkpoint_every=1)
    unlearn_kind(kind, callback=lambda record: time.sleep(0.25), **kwargs)


def short_run(out: Path) -> None:
    """Two steps of a two-process run, then the library's end of a process group; the names of
    the threads this process still has."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **dict(CASES["ddp"][1], steps=2))
    distributed.finish()
    threads = [Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in os.listdir("/proc/self/task")]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps(threads))


def peer_gone(out: Path, how: str) -> None:
    """Rank 1 leaves without a word ("exit") or hangs ("hang", 20 s); rank 0 must still end,
    within the teardown timeout."""
    dist.init_process_group("gloo")
    dist.barrier()
    if dist.get_rank() == 1:
        time.sleep(20 if how == "hang" else 0)
        os._exit(0)
    start = time.monotonic()
    distributed.finish(timeout=timedelta(seconds=5))
    (out / "rank0.json").write_text(json.dumps({"seconds": time.monotonic() - start}))


SCENARIOS = {"equivalence": equivalence, "non_finite": non_finite, "slow_checkpointed": slow_checkpointed,
             "short_run": short_run, "peer_gone": peer_gone}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](Path(sys.argv[2]), *sys.argv[3:])

"""A whole unlearning step (loss, backward, clipping, AdamW), the lean step as `unlearn`
runs it (in the first epoch, with its caches filled as in later epochs, and with
activation checkpointing) against the authors' recipe on the same batches. On this CPU: small models,
fp32. With L2L_FAST_BENCH_DEVICE=cuda: the paper-sized models (step_models.py),
batch 32 and 64, every precision (L2L_FAST_BENCH_PAPER_SIZES=1 runs those on the
CPU, e.g. with L2L_FAST_BENCH_BATCHES=1: a dry run, and the FLOPs of each step).
Each result's extra_info holds images/s, the FLOPs of one step, PyTorch's matmul
precision and TF32 switches (left at their defaults) and, on a GPU, the peak memory.
On a shared CPU, measure_steps.py interleaves the recipes instead."""
import gc
import os

import pytest
import torch

from conftest import sync
from measure_steps import precision_state
from step_models import CPU_RUNS, GPU_BATCHES, GPU_MODELS, build_step, has_caches, step_flops

DEVICE = os.environ.get("L2L_FAST_BENCH_DEVICE", "cpu")
PAPER_SIZES = DEVICE == "cuda" or os.environ.get("L2L_FAST_BENCH_PAPER_SIZES") == "1"
if PAPER_SIZES:
    PRECISIONS = os.environ.get("L2L_FAST_BENCH_PRECISIONS", "bf16,fp16,fp32").split(",")
    BATCHES = [int(b) for b in os.environ.get("L2L_FAST_BENCH_BATCHES", ",".join(map(str, GPU_BATCHES))).split(",")]
    RUNS = [(name, precision, batch) for name in GPU_MODELS for batch in BATCHES for precision in PRECISIONS]
else:
    RUNS = [(name, "fp32", batch) for name, batch in CPU_RUNS.items()]


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@pytest.mark.parametrize("recipe", ["lean", "lean_cached", "lean_ckpt", "authors"])
@pytest.mark.parametrize("name, precision, batch", RUNS, ids=[f"{n}-{p}-b{b}" for n, p, b in RUNS])
def test_unlearning_step(benchmark, recipe, name, precision, batch):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("L2L_FAST_BENCH_DEVICE=cuda needs a CUDA GPU")
    if recipe == "lean_cached" and not has_caches(name, DEVICE):
        pytest.skip(f"{name}: nothing to cache (random corruptions, no tokenizer)")
    if recipe == "lean_ckpt" and (not PAPER_SIZES or precision != "bf16"):
        pytest.skip("activation checkpointing is measured at the paper's sizes, in bf16 (for memory)")
    benchmark.group = f"unlearning step {precision} {name} batch {batch}+{batch}"
    step = build_step(name, recipe, precision, batch, DEVICE)
    step.run()  # fills the caches of lean_cached, warms up the device
    flops = step_flops(step)

    def run():
        step.run()
        sync(DEVICE)

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(run, rounds=3 if PAPER_SIZES else 15, warmup_rounds=1 if PAPER_SIZES else 3)
    benchmark.extra_info.update(images=step.images, flops=flops, **precision_state())
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = step.images / benchmark.stats.stats.mean
    if DEVICE == "cuda":
        benchmark.extra_info["peak_memory_GB"] = torch.cuda.max_memory_allocated() / 1e9
        benchmark.extra_info["device"] = torch.cuda.get_device_name()

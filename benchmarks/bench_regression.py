"""The regression quick set (`-m regression`): pairs timed in alternate rounds of one
benchmark, each pair's candidate being what `unlearn` runs (operators with backend="auto",
so that L2L_FAST_BACKEND=reference shows what a fallback to the reference costs; it is the
one in pytest-benchmark's statistics) and its baseline what a user would write instead
(timed before each round, kept in extra_info). Small shapes on the CPU (one torch thread,
the steadiest on a shared machine; L2L_FAST_BENCH_THREADS changes it), larger ones on a GPU
(L2L_FAST_BENCH_DEVICE=cuda). Ratios and the gate: ratios.py and conftest.py."""
import os
import time

import pytest
import torch

from l2l_fast.ops import encoder_distance, gaussian_target

import ratios
from conftest import BENCH_DEVICE, sync
from eager_baselines import eager_loss, eager_noise
from step_models import build_step

pytestmark = pytest.mark.regression

CUDA = BENCH_DEVICE == "cuda"
NOISE_SHAPE = (64, 3, 224, 224) if CUDA else (8, 3, 224, 224)
DISTANCE_SHAPE = (64, 197, 768) if CUDA else (16, 197, 384)
STEP = ("mae_vit_tiny_224", "bf16", 32) if CUDA else ("mae_fashion_mnist", "fp32", 8)
THREADS = int(os.environ.get("L2L_FAST_BENCH_THREADS", "1"))


@pytest.fixture(autouse=True, scope="module")
def _threads():
    if CUDA and not torch.cuda.is_available():
        pytest.skip("L2L_FAST_BENCH_DEVICE=cuda needs a CUDA GPU")
    before = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    sync(BENCH_DEVICE)
    return time.perf_counter() - start


def measure_pair(benchmark, pair: str, baseline, candidate, rounds: int, warmup: int = 1) -> None:
    """Rounds of `baseline` then `candidate`; extra_info gets the pair's ratio (ratios.round_ratio)."""
    benchmark.group = f"regression: {pair}"
    baseline_times = []

    def setup():
        baseline_times.append(_timed(baseline))

    def run():
        candidate()
        sync(BENCH_DEVICE)

    _timed(baseline), _timed(candidate)
    benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=warmup)
    measured = baseline_times[-rounds:]
    benchmark.extra_info.update(pair=pair, threads=torch.get_num_threads(), baseline_times=measured)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["ratio"] = ratios.round_ratio(measured, benchmark.stats.stats.data)


def test_noise(benchmark):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(NOISE_SHAPE, generator=g).to(BENCH_DEVICE)
    keep = torch.ones(NOISE_SHAPE[0], 1, *NOISE_SHAPE[2:], device=BENCH_DEVICE)
    keep[..., 56:168, 56:168] = 0
    measure_pair(benchmark, f"gaussian_target fused/eager {list(NOISE_SHAPE)}",
                 lambda: eager_noise(x, keep),
                 lambda: gaussian_target(x, seed=0, stats="batch", clamp=(0.0, 1.0), keep=keep), rounds=15)


def test_distance(benchmark):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE).requires_grad_()
    target = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE)
    weight = torch.full((DISTANCE_SHAPE[0],), 1.0 / DISTANCE_SHAPE[0], device=BENCH_DEVICE)

    def fwd_bwd(loss):
        def run():
            student.grad = None
            loss(student, target, weight).sum().backward()
        return run

    measure_pair(benchmark, f"encoder_distance fwd+bwd fused/eager {list(DISTANCE_SHAPE)}",
                 fwd_bwd(eager_loss), fwd_bwd(encoder_distance), rounds=40)


def test_step(benchmark):
    name, precision, batch = STEP
    authors = build_step(name, "authors", precision, batch, BENCH_DEVICE)
    lean = build_step(name, "lean", precision, batch, BENCH_DEVICE)
    measure_pair(benchmark, f"unlearning step lean/authors {name} {precision} batch {batch}+{batch}",
                 authors.run, lean.run, rounds=10, warmup=2)

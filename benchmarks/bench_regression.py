"""The regression quick set (`-m regression`): pairs timed in alternate rounds of one
benchmark, each pair's candidate being what `unlearn` runs (operators with backend="auto",
so that L2L_FAST_BACKEND=reference shows what a fallback to the reference costs; it is the
one in pytest-benchmark's statistics) and its baseline what a user would write instead
(timed before each round, kept in extra_info). Small shapes on the CPU (one torch thread,
the steadiest on a shared machine; L2L_FAST_BENCH_THREADS changes it), larger ones on a GPU
(L2L_FAST_BENCH_DEVICE=cuda). Ratios and the gate: ratios.py and conftest.py.

The ratio's clock (conftest.clock) is the process's CPU time on a CPU with one thread: time spent
waiting for a core that another job holds is not counted, so a busy shared machine moves the ratio
far less than it moves wall time (pytest-benchmark's own statistics stay wall time); wall time on
a GPU or with more threads.

A pair below its floor in --ratio-baseline is re-measured (ratios.RETRIES more attempts); its
ratio is the best attempt's, every attempt kept in extra_info["attempts"].

SLOWDOWN_ENV=0.5 (test-only: shows that the gate catches a slowdown) adds to every lean step
work that took half the step's own time when calibrated: matrix products, so that a
change of load slows the added work as it slows the step. update_baselines.py refuses its results."""
import os
import statistics

import pytest
import torch

from l2l_fast.ops import encoder_distance, gaussian_target

import ratios
from conftest import BENCH_DEVICE, clock, sync, timed
from eager_baselines import eager_loss, eager_noise
from step_models import build_step

pytestmark = pytest.mark.regression

CUDA = BENCH_DEVICE == "cuda"
NOISE_SHAPE = (64, 3, 224, 224) if CUDA else (8, 3, 224, 224)
DISTANCE_SHAPE = (64, 197, 768) if CUDA else (16, 197, 384)
STEP = ("mae_vit_tiny_224", "bf16", 32) if CUDA else ("mae_fashion_mnist", "fp32", 8)
THREADS = int(os.environ.get("L2L_FAST_BENCH_THREADS", "1"))
SLOWDOWN_ENV = "L2L_FAST_BENCH_SLOW_LEAN"
SLOWDOWN = float(os.environ.get(SLOWDOWN_ENV, "0"))


@pytest.fixture(autouse=True, scope="module")
def _threads():
    if CUDA and not torch.cuda.is_available():
        pytest.skip("L2L_FAST_BENCH_DEVICE=cuda needs a CUDA GPU")
    if ratios.missing_extension():
        pytest.fail(f"refusing to run: {ratios.missing_extension()}", pytrace=False)
    before = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _timed(run) -> float:
    return timed(run, BENCH_DEVICE)


def measure_pair(benchmark, floor, pair: str, baseline, candidate, rounds: int, warmup: int = 1) -> None:
    """Rounds of `baseline` then `candidate`; extra_info gets the pair's ratio (ratios.round_ratio),
    re-measured while below `floor` (at most ratios.RETRIES times)."""
    benchmark.group = f"regression: {pair}"
    baseline_times, candidate_times = [], []

    def setup():
        baseline_times.append(_timed(baseline))

    def run():
        candidate_times.append(_timed(candidate))

    _timed(baseline), _timed(candidate)
    benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=warmup)
    measured = baseline_times[-rounds:], candidate_times[-rounds:]
    benchmark.extra_info.update(pair=pair, threads=torch.get_num_threads(), clock=clock(BENCH_DEVICE).__name__,
                                baseline_times=measured[0], candidate_times=measured[1], slowdown=SLOWDOWN)
    if not benchmark.stats:  # None under --benchmark-disable
        return
    attempts = [ratios.round_ratio(*measured)]
    while floor is not None and max(attempts) < floor and len(attempts) <= ratios.RETRIES:
        times = [(_timed(baseline), _timed(candidate)) for _ in range(rounds)]
        attempts.append(ratios.round_ratio(*zip(*times)))
    benchmark.extra_info.update(ratio=max(attempts), attempts=attempts)


def slowed(run, fraction: float, info: dict):
    """`run` followed by matrix products that took `fraction` of its time when calibrated; `info`
    gets the calibration and the slowdown then measured (slowed / plain time, median of 3 pairs)."""
    if not fraction:
        return run
    a = torch.randn(256, 256, device=BENCH_DEVICE)

    def work(n):
        for _ in range(n):
            a @ a
        sync(BENCH_DEVICE)

    step = statistics.median(_timed(run) for _ in range(3))
    unit = statistics.median(_timed(lambda: work(10)) for _ in range(3)) / 10
    n = max(1, round(fraction * step / unit))

    def run_slowed():
        run()
        work(n)

    measured = statistics.median(_timed(run_slowed) / _timed(run) for _ in range(3)) - 1
    info.update(slowdown_calibration=dict(step_s=step, added_s=n * unit, measured=measured))
    return run_slowed


def test_noise(benchmark, ratio_floor):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(NOISE_SHAPE, generator=g).to(BENCH_DEVICE)
    keep = torch.ones(NOISE_SHAPE[0], 1, *NOISE_SHAPE[2:], device=BENCH_DEVICE)
    keep[..., 56:168, 56:168] = 0
    pair = f"gaussian_target fused/eager {list(NOISE_SHAPE)}"
    measure_pair(benchmark, ratio_floor(pair), pair,
                 lambda: eager_noise(x, keep),
                 lambda: gaussian_target(x, seed=0, stats="batch", clamp=(0.0, 1.0), keep=keep), rounds=20)


def test_distance(benchmark, ratio_floor):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE).requires_grad_()
    target = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE)
    weight = torch.full((DISTANCE_SHAPE[0],), 1.0 / DISTANCE_SHAPE[0], device=BENCH_DEVICE)

    def fwd_bwd(loss):
        def run():
            student.grad = None
            loss(student, target, weight).sum().backward()
        return run

    pair = f"encoder_distance fwd+bwd fused/eager {list(DISTANCE_SHAPE)}"
    measure_pair(benchmark, ratio_floor(pair), pair, fwd_bwd(eager_loss), fwd_bwd(encoder_distance), rounds=120)


def test_step(benchmark, ratio_floor):
    name, precision, batch = STEP
    authors = build_step(name, "authors", precision, batch, BENCH_DEVICE)
    lean = build_step(name, "lean", precision, batch, BENCH_DEVICE)
    pair = f"unlearning step lean/authors {name} {precision} batch {batch}+{batch}"
    measure_pair(benchmark, ratio_floor(pair), pair, authors.run, slowed(lean.run, SLOWDOWN, benchmark.extra_info),
                 rounds=16, warmup=2)

"""The regression quick set (`-m regression`): pairs of benchmarks measured in the same run,
each pair's candidate being what `unlearn` runs (operators with backend="auto", so that
L2L_FAST_BACKEND=reference shows what a fallback to the reference costs) and its baseline
what a user would write instead. Small shapes on the CPU (one torch thread, the steadiest
on a shared machine; L2L_FAST_BENCH_THREADS changes it), larger ones on a GPU
(L2L_FAST_BENCH_DEVICE=cuda). Ratios and the gate: conftest.py and ratios.py."""
import os

import pytest
import torch

from l2l_fast.ops import encoder_distance, gaussian_target

from bench_encoder_distance import eager_loss
from bench_gaussian_target import eager_noise
from conftest import BENCH_DEVICE, sync
from step_models import build_step

pytestmark = pytest.mark.regression

CUDA = BENCH_DEVICE == "cuda"
NOISE_SHAPE = (64, 3, 224, 224) if CUDA else (8, 3, 224, 224)
DISTANCE_SHAPE = (64, 197, 768) if CUDA else (16, 197, 384)
STEP = ("mae_vit_tiny_224", "bf16", 32) if CUDA else ("mae_fashion_mnist", "fp32", 8)
THREADS = int(os.environ.get("L2L_FAST_BENCH_THREADS", "1"))
ROLES = ["baseline", "candidate"]


@pytest.fixture(autouse=True, scope="module")
def _threads():
    if CUDA and not torch.cuda.is_available():
        pytest.skip("L2L_FAST_BENCH_DEVICE=cuda needs a CUDA GPU")
    before = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _measure(benchmark, pair, role, run, rounds, warmup=1):
    benchmark.group = f"regression: {pair}"
    benchmark.extra_info.update(pair=pair, role=role, threads=torch.get_num_threads())

    def timed():
        run()
        sync(BENCH_DEVICE)

    timed()
    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup)


@pytest.mark.parametrize("role", ROLES)
def test_noise(benchmark, role):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(NOISE_SHAPE, generator=g).to(BENCH_DEVICE)
    keep = torch.ones(NOISE_SHAPE[0], 1, *NOISE_SHAPE[2:], device=BENCH_DEVICE)
    keep[..., 56:168, 56:168] = 0
    if role == "baseline":
        def run():
            eager_noise(x, keep)
    else:
        def run():
            gaussian_target(x, seed=0, stats="batch", clamp=(0.0, 1.0), keep=keep)
    _measure(benchmark, f"gaussian_target fused/eager {list(NOISE_SHAPE)}", role, run, rounds=15)


@pytest.mark.parametrize("role", ROLES)
def test_distance(benchmark, role):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE).requires_grad_()
    target = torch.randn(DISTANCE_SHAPE, generator=g).to(BENCH_DEVICE)
    weight = torch.full((DISTANCE_SHAPE[0],), 1.0 / DISTANCE_SHAPE[0], device=BENCH_DEVICE)
    loss = eager_loss if role == "baseline" else encoder_distance

    def run():
        student.grad = None
        loss(student, target, weight).sum().backward()

    _measure(benchmark, f"encoder_distance fwd+bwd fused/eager {list(DISTANCE_SHAPE)}", role, run, rounds=50)


@pytest.mark.parametrize("role", ROLES)
def test_step(benchmark, role):
    name, precision, batch = STEP
    step = build_step(name, "authors" if role == "baseline" else "lean", precision, batch, BENCH_DEVICE)
    _measure(benchmark, f"unlearning step lean/authors {name} {precision} batch {batch}+{batch}", role, step.run,
             rounds=10, warmup=2)

"""encoder_distance forward + backward on the embedding shapes of real encoders."""
import pytest
import torch
from conftest import QUICK, providers, providers_filter, sync
from eager_baselines import eager_loss

import l2l_fast
from l2l_fast.ops import reference
from l2l_fast.ops import encoder_distance, encoder_distance_multi

SHAPES = {
    "mae_vit_b": (64, 197, 768),
    "mae_vit_l": (64, 197, 1024),
    "mage_vit_b": (32, 129, 768),
}
# The encoder feature maps of a Palette UNet (64 channels, multipliers 1,2,4,8) at 256x256.
PALETTE_MAPS = [
    (64, 256), (64, 256), (64, 256), (64, 128), (128, 128), (128, 128), (128, 64),
    (256, 64), (256, 64), (256, 32), (512, 32), (512, 32), (512, 32),
]
PALETTE_BATCH = 8
# Per-call cost against the eager expression: a tiny loss (overhead) and a ViT-B one (work).
PER_CALL_SHAPES = {"overhead": (4, 8), "work": (64, 197, 768)}


def _compiled_reference():
    return torch.compile(reference.encoder_distance, dynamic=False)


def make_loss(provider):
    if provider == "reference":
        return lambda s, t, w: reference.encoder_distance(s, t, w)
    if provider == "compiled_reference":
        return _compiled_reference()
    return lambda s, t, w: encoder_distance(s, t, w, backend=provider)


CASES = [pytest.param(p.values[0], p.values[1], shape, id=f"{p.id}-{shape}")
         for shape in SHAPES for p in providers(compiled=not QUICK or shape == "mae_vit_b")]


@pytest.mark.parametrize("provider, device, shape", CASES)
def test_encoder_distance_fwd_bwd(benchmark, provider, device, shape):
    benchmark.group = f"encoder_distance fwd+bwd {shape} {list(SHAPES[shape])}"
    benchmark.extra_info.update(shape=list(SHAPES[shape]), bytes=3 * 4 * torch.Size(SHAPES[shape]).numel())
    g = torch.Generator().manual_seed(0)
    student = torch.randn(SHAPES[shape], generator=g).to(device).requires_grad_()
    target = torch.randn(SHAPES[shape], generator=g).to(device)
    weight = torch.full((SHAPES[shape][0],), 1.0 / SHAPES[shape][0], device=device)
    loss = make_loss(provider)

    def step():
        student.grad = None
        loss(student, target, weight).sum().backward()
        sync(device)

    step()  # warm-up (and compilation)
    benchmark.pedantic(step, rounds=10, warmup_rounds=1)


@pytest.mark.parametrize("provider, device", providers(compiled=not QUICK))
def test_encoder_distance_multi_palette(benchmark, provider, device):
    benchmark.group = "encoder_distance_multi fwd+bwd palette 13 maps"
    g = torch.Generator().manual_seed(0)
    shapes = [(PALETTE_BATCH, c, r, r) for c, r in PALETTE_MAPS]
    if device == "cpu":
        shapes = [(PALETTE_BATCH, c, r // 2, r // 2) for c, r in PALETTE_MAPS]  # 128x128 on a CPU
    benchmark.extra_info.update(shapes=shapes, bytes=3 * 4 * sum(torch.Size(s).numel() for s in shapes))
    students = [torch.randn(s, generator=g).to(device).requires_grad_() for s in shapes]
    targets = [torch.randn(s, generator=g).to(device) for s in shapes]
    weight = torch.full((PALETTE_BATCH,), 1.0 / PALETTE_BATCH, device=device)
    if provider == "reference":
        loss = reference.encoder_distance_multi
    elif provider == "compiled_reference":
        loss = torch.compile(reference.encoder_distance_multi, dynamic=False)
    else:
        def loss(s, t, w):
            return encoder_distance_multi(s, t, w, backend=provider)

    def step():
        for s in students:
            s.grad = None
        loss(students, targets, weight).sum().backward()
        sync(device)

    step()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def per_call_cases():
    found = [("eager", "cpu"), ("fused", "cpu")]
    if torch.cuda.is_available():
        found += [("eager", "cuda"), ("fused", "cuda")]
        found += [("triton", "cuda")] if l2l_fast.backends()["triton"] else []
    return [pytest.param(p, d, size, id=f"{p}-{d}-{size}")
            for size in PER_CALL_SHAPES for p, d in providers_filter(found)]


@pytest.mark.parametrize("provider, device, size", per_call_cases())
def test_encoder_distance_per_call(benchmark, provider, device, size):
    """encoder_distance fwd+bwd (default backend, or Triton) against eager_loss; the
    fused/eager time ratio of each group is written to the JSON (benchmarks/conftest.py)."""
    shape = PER_CALL_SHAPES[size]
    benchmark.group = f"encoder_distance per call fwd+bwd {size} {list(shape)}"
    benchmark.extra_info.update(shape=list(shape), bytes=3 * 4 * torch.Size(shape).numel())
    g = torch.Generator().manual_seed(0)
    student = torch.randn(shape, generator=g).to(device).requires_grad_()
    target = torch.randn(shape, generator=g).to(device)
    weight = torch.full((shape[0],), 1.0 / shape[0], device=device)
    if provider == "eager":
        loss = eager_loss
    else:
        backend = "triton" if provider == "triton" else "auto"
        def loss(s, t, w):
            return encoder_distance(s, t, w, backend=backend)

    def step():
        student.grad = None
        loss(student, target, weight).sum().backward()
        sync(device)

    step()
    if size == "overhead":
        benchmark.pedantic(step, rounds=200, iterations=25, warmup_rounds=20)
    else:
        benchmark.pedantic(step, rounds=15, warmup_rounds=2)

"""gaussian_target with batch statistics (computed, or given as all-reduced ones are),
clamp and a corruption mask, against the user's alternative ("eager": torch.randn_like
scaled by the batch's std and mean, clamped, blended with the mask, as the authors' code
draws it) and the plain-PyTorch reference (the tests' oracle, slow on purpose: it computes
the Philox stream with integer tensor arithmetic)."""
import pytest
import torch

from l2l_fast.ops import gaussian_target, reference

from conftest import QUICK, providers, providers_filter, sync
from eager_baselines import eager_noise

SHAPES = {
    "imagenet_224": (64, 3, 224, 224),
    "imagenet_256": (32, 3, 256, 256),
}


def _eager(device):
    return pytest.param("eager", device, id=f"eager-{device}")


def _devices():
    return [d for _, d in providers_filter([("eager", "cpu"), ("eager", "cuda")])
            if d == "cpu" or torch.cuda.is_available()]


CASES = [pytest.param(p.values[0], p.values[1], shape, statistics, id=f"{p.id}-{shape}-{statistics}")
         for shape in SHAPES
         for p in providers(compiled=not QUICK or shape == "imagenet_224") + [_eager(d) for d in _devices()]
         for statistics in (("computed", "given") if shape == "imagenet_224" and p.values[0] != "eager"
                            else ("computed",))]


@pytest.mark.parametrize("provider, device, shape, statistics", CASES)
def test_gaussian_target(benchmark, provider, device, shape, statistics):
    dims = SHAPES[shape]
    benchmark.group = f"gaussian_target batch({statistics})+clamp+keep {shape} {list(dims)}"
    benchmark.extra_info.update(shape=list(dims), bytes=2 * 4 * torch.Size(dims).numel())
    x = torch.rand(dims, generator=torch.Generator().manual_seed(0)).to(device)
    keep = torch.ones(dims[0], 1, dims[2], dims[3], device=device)
    keep[:, :, dims[2] // 4 : 3 * dims[2] // 4, dims[3] // 4 : 3 * dims[3] // 4] = 0
    kwargs = dict(seed=0, offset=0, stats="batch", clamp=(0.0, 1.0), keep=keep)
    if statistics == "given":
        kwargs["mean"], kwargs["std"] = reference.noise_statistics(x, "batch")
    if provider == "eager":
        def run():
            return eager_noise(x, keep)
    elif provider == "reference":
        def run():
            return reference.gaussian_target(x, **kwargs)
    elif provider == "compiled_reference":
        compiled = torch.compile(reference.gaussian_target, dynamic=False)

        def run():
            return compiled(x, **kwargs)
    else:
        def run():
            return gaussian_target(x, **kwargs, backend=provider)

    def step():
        run()
        sync(device)

    step()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)

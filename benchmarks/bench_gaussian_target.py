"""gaussian_target with batch statistics (computed, or given as all-reduced ones are),
clamp and a corruption mask."""
import pytest
import torch

from l2l_fast.ops import gaussian_target, reference

from conftest import QUICK, providers, sync

SHAPES = {
    "imagenet_224": (64, 3, 224, 224),
    "imagenet_256": (32, 3, 256, 256),
}


CASES = [pytest.param(p.values[0], p.values[1], shape, statistics, id=f"{p.id}-{shape}-{statistics}")
         for shape in SHAPES for p in providers(compiled=not QUICK or shape == "imagenet_224")
         for statistics in (("computed", "given") if shape == "imagenet_224" else ("computed",))]


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
    if provider == "reference":
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

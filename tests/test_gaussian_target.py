import pytest
import torch

import l2l_fast
from l2l_fast.ops import gaussian_target, reference

from conftest import backend_params

BACKENDS = backend_params()
MASK32 = 0xFFFFFFFF


def u32(*values):
    return [torch.tensor([v], dtype=torch.int64) for v in values]


@pytest.mark.parametrize("counter, key, expected", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32, MASK32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_reference_philox_known_answers(counter, key, expected):
    """Random123's published Philox4x32-10 known-answer vectors."""
    out = reference.philox4x32_10(*u32(*counter), *key)
    assert tuple(int(o) for o in out) == expected


def test_reference_uniform_and_normal_by_hand():
    ints = torch.tensor([0, 2**31 - 1, 2**31, 2**32 - 1], dtype=torch.int64)
    u = reference.uint_to_uniform(ints)
    scale = torch.tensor(4.6566127342e-10, dtype=torch.float32)
    assert u.tolist() == [0.0, (torch.tensor(2**31 - 1.0) * scale).item(),
                          (torch.tensor(2**31 - 1.0) * scale).item(), 0.0]
    z = reference.box_muller(torch.tensor([0.5, 0.0]), torch.tensor([0.0, 0.25]))
    assert z[0].item() == pytest.approx((-2 * torch.log(torch.tensor(0.5))).sqrt().item(), rel=1e-6)
    assert abs(z[1].item()) < 1e-5  # cos(pi/2) at the clamped u1 = 1e-7


def test_reference_stream_is_tritons_randn():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    @triton.jit
    def randn_kernel(out_ptr, seed, offset, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + i, tl.randn(seed, offset + i.to(tl.int64)), mask=i < n)

    for seed, offset in [(0, 0), (123456789012, 17), (5, 2**32 - 100)]:
        out = torch.empty(300)
        randn_kernel[(3,)](out, seed, offset, 300, BLOCK=128)
        torch.testing.assert_close(out, reference.philox_normal(seed, offset, 300), rtol=0, atol=1e-6)


COMPILED_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.skipif(not l2l_fast.backends()["cpu"], reason="needs the compiled extension")
@pytest.mark.parametrize("device", COMPILED_DEVICES)
@pytest.mark.parametrize("seed, offset", [(0, 0), (2024, 2**32 - 7), (2**63 - 1, 2**40 + 3)])
def test_compiled_integer_stream_is_the_reference_bit_for_bit(device, seed, offset):
    from l2l_fast.ops.gaussian_target import philox_stream

    stream = philox_stream(torch.empty(3, 333, device=device), seed=seed, offset=offset).cpu()
    r0, r1, _, _ = reference.philox_randint4x(seed, torch.arange(999) + offset)
    assert torch.equal(stream[:, 0], r0) and torch.equal(stream[:, 1], r1)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("offset", [0, 12345, 2**32 - 7, 2**40 + 3])
def test_standard_stream_matches_reference(backend, device, offset):
    x = torch.empty(3, 5, 7, device=device)
    out = gaussian_target(x, seed=2024, offset=offset, stats="standard", backend=backend)
    expected = reference.philox_normal(2024, offset, x.numel()).reshape(x.shape)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("stats", ["batch", "sample", "channel", "standard"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_statistics_match_reference(backend, device, stats, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 8, 8, generator=g) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)).to(device, dtype)
    out = gaussian_target(x, seed=9, offset=100, stats=stats, backend=backend)
    expected = reference.gaussian_target(x.cpu(), seed=9, offset=100, stats=stats)
    assert out.dtype == dtype and out.shape == x.shape
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out.cpu().float(), expected.float(), **tol)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_batch_statistics_of_a_large_draw(backend, device):
    x = (torch.randn(16, 1, 64, 64, generator=torch.Generator().manual_seed(3)) * 0.3 + 0.7).to(device)
    out = gaussian_target(x, seed=1, stats="batch", backend=backend)
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=4 * 0.3 / 256)
    assert out.std().item() == pytest.approx(x.std().item(), rel=0.01)
    z = gaussian_target(x, seed=1, stats="standard", backend=backend)
    assert abs(z.mean().item()) < 4 / 256 and z.std().item() == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_keep_clamp_and_fill(backend, device):
    x = torch.rand(2, 3, 6, 6, device=device)
    keep = torch.ones(2, 1, 6, 6, device=device)
    keep[:, :, 2:4, 2:4] = 0
    out = gaussian_target(x, seed=4, stats="batch", clamp=(0.2, 0.6), keep=keep, fill=-1.0, backend=backend)
    hole = (keep == 0).expand_as(x)
    assert torch.equal(out[hole], torch.full_like(out[hole], -1.0))
    lo, hi = torch.tensor([0.2, 0.6]).tolist()  # the bounds in float32
    assert out[~hole].min().item() >= lo and out[~hole].max().item() <= hi
    expected = reference.gaussian_target(x, seed=4, stats="batch", clamp=(0.2, 0.6), keep=keep, fill=-1.0)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_offsets_continue_one_stream_and_separate_draws(backend, device):
    x = torch.empty(2, 50, device=device)
    whole = gaussian_target(torch.empty(4, 50, device=device), seed=8, stats="standard", backend=backend)
    second = gaussian_target(x, seed=8, offset=100, stats="standard", backend=backend)
    first = gaussian_target(x, seed=8, offset=0, stats="standard", backend=backend)
    assert torch.equal(whole[2:], second) and torch.equal(whole[:2], first)
    assert not set(first.flatten().tolist()) & set(second.flatten().tolist())
    other_seed = gaussian_target(x, seed=9, offset=0, stats="standard", backend=backend)
    assert not torch.equal(first, other_seed)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_errors_name_the_argument(backend, device):
    x = torch.rand(2, 3, 4, 4, device=device)

    def call(*args, **kwargs):
        kwargs.setdefault("seed", 0)
        return gaussian_target(*args, **kwargs, backend=backend)

    with pytest.raises(ValueError, match="stats must be one of"):
        call(x, stats="global")
    with pytest.raises(TypeError, match="x must be float32"):
        call(x.long())
    with pytest.raises(ValueError, match="non-empty batch"):
        call(x[:0])
    with pytest.raises(ValueError, match="keep of shape"):
        call(x, keep=torch.ones(2, 1, 3, 3, device=device))
    with pytest.raises(ValueError, match="clamp must be"):
        call(x, clamp=(1.0, 0.0))
    with pytest.raises(ValueError, match="seed must be in"):
        call(x, seed=-1)
    with pytest.raises(TypeError, match="offset must be an int"):
        call(x, offset=1.5)
    with pytest.raises(ValueError, match="keep is on meta"):
        call(x, keep=torch.ones(1, device="meta"))


def given_stats(x, stats, layout, generator):
    """Random (mean, std) for `stats`, float64, in the broadcast shape or flat."""
    shape = reference.stats_shape(x, stats)
    mean = torch.randn(shape, generator=generator, dtype=torch.float64)
    std = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5
    if layout == "flat":
        mean, std = mean.flatten(), std.flatten()
    return mean.to(x.device), std.to(x.device)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("stats", ["batch", "sample", "channel"])
@pytest.mark.parametrize("layout", ["broadcast", "flat"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_given_statistics_match_reference(backend, device, stats, layout, dtype):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 5, 7, generator=g).to(device, dtype)
    keep = (torch.rand(4, 1, 5, 7, generator=g) > 0.3).float().to(device)
    mean, std = given_stats(x, stats, layout, g)
    kwargs = dict(seed=21, offset=9, stats=stats, mean=mean, std=std, clamp=(-1.0, 1.5), keep=keep, fill=0.25)
    out = gaussian_target(x, **kwargs, backend=backend)
    expected = reference.gaussian_target(x.cpu(), **{**kwargs, "mean": mean.cpu(), "std": std.cpu(), "keep": keep.cpu()})
    assert out.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out.cpu().float(), expected.float(), **tol)
    # the given statistics are used, not those of x
    own = reference.gaussian_target(x.cpu(), seed=21, offset=9, stats=stats, clamp=(-1.0, 1.5), keep=keep.cpu(), fill=0.25)
    assert not torch.allclose(out.cpu().float(), own.float(), **tol)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("stats", ["batch", "sample", "channel"])
def test_given_computed_statistics_reproduce_the_output_without(backend, device, stats):
    x = (torch.randn(3, 4, 6, 5, generator=torch.Generator().manual_seed(6)) * 2 + 1).to(device)
    mean, std = reference.noise_statistics(x, stats)
    given = gaussian_target(x, seed=2, offset=40, stats=stats, mean=mean, std=std, backend=backend)
    computed = gaussian_target(x, seed=2, offset=40, stats=stats, backend=backend)
    if backend == "reference":
        assert torch.equal(given, computed)
    else:
        torch.testing.assert_close(given, computed)  # mu, sigma summed in another order
    torch.testing.assert_close(given.cpu(), reference.gaussian_target(x.cpu(), seed=2, offset=40, stats=stats))


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("stats", ["batch", "channel"])
def test_shards_with_all_reduced_statistics_are_the_whole_batch(backend, device, stats):
    """What multi-process training does: sums over the shards in float64, global mu and
    unbiased sigma, each shard drawn at its own offset of the one stream."""
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(7)).to(device)
    shards = x.chunk(3)
    dims = tuple(range(x.dim())) if stats == "batch" else (0, 2, 3)
    sums = sum(torch.stack([s.double().sum(dims), s.double().square().sum(dims)]) for s in shards)
    count = x.numel() // (1 if stats == "batch" else x.shape[1])
    mean = sums[0] / count
    std = ((sums[1] - count * mean.square()) / (count - 1)).sqrt()
    whole = gaussian_target(x, seed=3, offset=11, stats=stats, backend=backend)
    parts = [gaussian_target(s, seed=3, offset=11 + i * s.numel(), stats=stats, mean=mean, std=std, backend=backend)
             for i, s in enumerate(shards)]
    torch.testing.assert_close(torch.cat(parts), whole)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_given_statistics_errors_name_the_argument(backend, device):
    x = torch.rand(2, 3, 4, 4, device=device)
    one = torch.zeros((), device=device)

    def call(**kwargs):
        kwargs.setdefault("stats", "batch")
        return gaussian_target(x, seed=0, **kwargs, backend=backend)

    with pytest.raises(ValueError, match="mean and std must be given together, got only mean"):
        call(mean=one)
    with pytest.raises(ValueError, match="mean and std must be given together, got only std"):
        call(std=one)
    with pytest.raises(ValueError, match="stats='standard' takes no mean and std"):
        call(stats="standard", mean=one, std=one)
    with pytest.raises(ValueError, match=r"mean must have 3 element\(s\) for stats='channel' \(e.g. shape \[1, 3, 1, 1\]\), got shape \[2\]"):
        call(stats="channel", mean=torch.zeros(2, device=device), std=torch.ones(3, device=device))
    with pytest.raises(ValueError, match=r"std must have 2 element\(s\) for stats='sample'"):
        call(stats="sample", mean=torch.zeros(2, 1, device=device), std=torch.ones(3, device=device))
    with pytest.raises(TypeError, match="std must be a floating-point tensor, got list"):
        call(mean=one, std=[1.0])
    with pytest.raises(TypeError, match="mean must be a floating-point tensor, got torch.int64"):
        call(mean=torch.zeros((), dtype=torch.int64, device=device), std=one)
    with pytest.raises(ValueError, match="mean is on meta but x is on"):
        call(mean=torch.zeros((), device="meta"), std=one)


def test_reference_statistics_shapes():
    x = torch.rand(2, 3, 4)
    assert reference.stats_shape(x, "batch") == [1, 1, 1]
    assert reference.stats_shape(x, "sample") == [2, 1, 1]
    assert reference.stats_shape(x, "channel") == [1, 3, 1]
    for stats in ("batch", "sample", "channel"):
        mu, sigma = reference.noise_statistics(x, stats)
        assert list(mu.shape) == list(sigma.shape) == reference.stats_shape(x, stats)
        given_mu, given_sigma = reference.noise_statistics(x, stats, mu.flatten(), sigma.flatten())
        assert torch.equal(given_mu, mu) and torch.equal(given_sigma, sigma)


@pytest.mark.parametrize("name", [n for n, b in (("gaussian_target", "cpu"), ("gaussian_target_triton", "triton"))
                                  if l2l_fast.backends()[b]])
def test_opcheck_with_given_statistics(name):
    x = torch.rand(2, 3, 4, 4)
    mean, std = reference.noise_statistics(x, "channel")
    keep = torch.ones(2, 1, 4, 4).expand(2, 3, 4, 4)
    op = getattr(torch.ops.l2l_fast, name)
    torch.library.opcheck(op, (x, 5, 17, "channel", 0.0, 1.0, keep, 0.5, mean, std))
    torch.testing.assert_close(op(x, 5, 17, "channel", 0.0, 1.0, keep, 0.5, mean, std),
                               reference.gaussian_target(x, seed=5, offset=17, stats="channel", clamp=(0.0, 1.0)))

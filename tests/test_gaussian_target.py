import pytest
import torch
from conftest import backend_params

import l2l_fast
from l2l_fast.ops import reference
from l2l_fast.ops import gaussian_target

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

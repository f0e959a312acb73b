"""The C++ argument checks (csrc/op_checks.h, csrc/op_host.h), called without the
Python layer: each bad input raises the documented error type and message, and the
dtypes Python accepts run and match the reference."""
import re

import pytest
import torch

import l2l_fast
from l2l_fast.ops import reference

pytestmark = pytest.mark.skipif(not l2l_fast.backends()["cpu"], reason="needs the compiled extension")

ops = torch.ops.l2l_fast
FLOAT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CPU_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


def on_cpu_kernel(op, *args):
    """Runs the CPU kernel whatever the devices: with a meta tensor among the
    arguments the dispatcher would otherwise pick the fake kernel."""
    return op.default.redispatch(CPU_KEYS, *args)


def raises(error, message):
    return pytest.raises(error, match=re.escape(message))


def rand(*shape, dtype=torch.float32):
    return torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))).to(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("distance", ["mse", "l2"])
def test_accepted_dtypes_match_reference(dtype, distance):
    s, t, w = rand(3, 4, 5, dtype=dtype), rand(3, 4, 5, dtype=dtype) * 0.5, torch.rand(3)
    out, _ = ops.encoder_distance(s, t, w, distance, False)
    expected = reference.encoder_distance(s, t, w, distance=distance)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    multi, _ = ops.encoder_distance_multi([s, s[:, 0]], [t, t[:, 0]], w, distance, False)
    torch.testing.assert_close(multi, reference.encoder_distance_multi([s, s[:, 0]], [t, t[:, 0]], w, distance=distance))
    torch.testing.assert_close(ops.scale_rows(s, w).float(), (s.float() * w.view(3, 1, 1)).to(dtype).float())
    noise = ops.gaussian_target(s, 4, 0, "sample", None, None, None, 0.0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(noise.float(), reference.gaussian_target(s, seed=4, stats="sample").float(),
                               rtol=tol, atol=tol)


def test_encoder_distance_checks():
    s, t = rand(2, 3), rand(2, 3)
    with raises(TypeError, "encoder_distance: student must be float32, bfloat16 or float16, got torch.float64"):
        ops.encoder_distance(s.double(), t.double(), None, "mse", False)
    with raises(TypeError, "encoder_distance: target must have student's dtype torch.float32, got torch.float16"):
        ops.encoder_distance(s, t.half(), None, "mse", False)
    with raises(ValueError, "encoder_distance: target must have student's shape [2, 3], got [2, 4]"):
        ops.encoder_distance(s, rand(2, 4), None, "mse", False)
    with raises(ValueError, "encoder_distance: target must be on student's device cpu, got meta"):
        on_cpu_kernel(ops.encoder_distance, s, t.to("meta"), None, "mse", False)
    with raises(ValueError, "encoder_distance: empty batch: student has shape [0, 3]"):
        ops.encoder_distance(s[:0], t[:0], None, "mse", False)
    with raises(ValueError, "encoder_distance: student must have a batch dimension [B, ...], got a 0-d tensor"):
        ops.encoder_distance(s[0, 0], t[0, 0], None, "mse", False)
    with raises(ValueError, "encoder_distance: distance must be 'mse' or 'l2', got 'l1'"):
        ops.encoder_distance(s, t, None, "l1", False)
    with raises(ValueError, "encoder_distance: weight must have shape [2], got [3]"):
        ops.encoder_distance(s, t, torch.ones(3), "mse", False)
    with raises(TypeError, "encoder_distance: weight must be a floating-point tensor, got torch.int64"):
        ops.encoder_distance(s, t, torch.ones(2, dtype=torch.int64), "mse", False)
    with raises(ValueError, "encoder_distance: weight must be on the inputs' device cpu, got meta"):
        on_cpu_kernel(ops.encoder_distance, s, t, torch.ones(2, device="meta"), "mse", False)


def test_encoder_distance_multi_checks():
    s, t = [rand(2, 3), rand(2, 2, 2)], [rand(2, 3), rand(2, 2, 2)]
    with raises(ValueError, "encoder_distance_multi: students must hold at least one feature map"):
        on_cpu_kernel(ops.encoder_distance_multi, [], [], None, "mse", False)  # no tensor to dispatch on
    with raises(ValueError, "encoder_distance_multi: targets must hold one map per student map (2), got 1"):
        ops.encoder_distance_multi(s, t[:1], None, "mse", False)
    with raises(TypeError, "encoder_distance_multi: students[1] must be float32, bfloat16 or float16, got torch.float64"):
        ops.encoder_distance_multi([s[0], s[1].double()], [t[0], t[1].double()], None, "mse", False)
    with raises(ValueError, "encoder_distance_multi: targets[0] must have students[0]'s shape [2, 3], got [2, 2, 2]"):
        ops.encoder_distance_multi(s, t[::-1], None, "mse", False)
    with raises(ValueError, "encoder_distance_multi: students[1] must have the batch size of students[0] (2), got 3"):
        ops.encoder_distance_multi([s[0], rand(3, 4)], [t[0], rand(3, 4)], None, "mse", False)
    with raises(ValueError, "encoder_distance_multi: students[1] must be on students[0]'s device cpu, got meta"):
        on_cpu_kernel(ops.encoder_distance_multi, [s[0], s[1].to("meta")], [t[0], t[1].to("meta")], None, "l2", False)
    with raises(ValueError, "encoder_distance_multi: empty batch: students[0] has shape [0, 3]"):
        ops.encoder_distance_multi([s[0][:0]], [t[0][:0]], None, "mse", False)
    with raises(ValueError, "encoder_distance_multi: distance must be 'mse' or 'l2', got 'MSE'"):
        ops.encoder_distance_multi(s, t, None, "MSE", False)


def test_scale_rows_checks():
    unit = rand(3, 4)
    with raises(TypeError, "scale_rows: grad_unit must be float32, bfloat16 or float16, got torch.float64"):
        ops.scale_rows(unit.double(), torch.ones(3))
    with raises(TypeError, "scale_rows: grad_out must be float32, bfloat16 or float16, got torch.float64"):
        ops.scale_rows(unit, torch.ones(3, dtype=torch.float64))
    with raises(ValueError, "scale_rows: grad_out must have shape [3], got [3, 1]"):
        ops.scale_rows(unit, torch.ones(3, 1))
    with raises(ValueError, "scale_rows: grad_unit must have a batch dimension [B, ...], got a 0-d tensor"):
        ops.scale_rows(unit[0, 0], torch.ones(1))
    with raises(ValueError, "scale_rows: grad_out must be on grad_unit's device cpu, got meta"):
        on_cpu_kernel(ops.scale_rows, unit, torch.ones(3, device="meta"))
    assert ops.scale_rows(unit[:0], torch.ones(0)).shape == (0, 4)


def test_gaussian_target_checks():
    x = rand(2, 3, 4)

    def call(x=x, offset=0, stats="batch", keep=None, mean=None, std=None):
        return ops.gaussian_target(x, 1, offset, stats, None, None, keep, 0.0, mean, std)

    with raises(TypeError, "gaussian_target: x must be float32, bfloat16 or float16, got torch.float64"):
        call(x.double())
    with raises(ValueError, "gaussian_target: empty batch: x has shape [0, 3, 4]"):
        call(x[:0])
    with raises(ValueError, "gaussian_target: x must have a batch dimension [B, ...], got a 0-d tensor"):
        call(x[0, 0, 0])
    with raises(ValueError, "gaussian_target: offset must be >= 0, got -1"):
        call(offset=-1)
    with raises(ValueError, "gaussian_target: stats must be 'batch', 'sample', 'channel' or 'standard', got 'global'"):
        call(stats="global")
    with raises(ValueError, "gaussian_target: keep must broadcast to x's shape [2, 3, 4], got [2, 3, 3]"):
        call(keep=torch.ones(2, 3, 3))
    with raises(TypeError, "gaussian_target: keep must be a real or bool tensor, got torch.complex64"):
        call(keep=torch.ones(1, dtype=torch.complex64))
    with raises(ValueError, "gaussian_target: keep must be on x's device cpu, got meta"):
        on_cpu_kernel(ops.gaussian_target, x, 1, 0, "batch", None, None, torch.ones(1, device="meta"), 0.0)


def test_gaussian_target_given_statistics_checks():
    x = rand(2, 3, 4)
    one = torch.zeros(())

    def call(stats="batch", mean=None, std=None):
        return ops.gaussian_target(x, 1, 0, stats, None, None, None, 0.0, mean, std)

    with raises(ValueError, "gaussian_target: mean and std must be given together, got only mean"):
        call(mean=one)
    with raises(ValueError, "gaussian_target: mean and std must be given together, got only std"):
        call(std=one)
    with raises(ValueError, "gaussian_target: stats='standard' takes no mean and std"):
        call("standard", one, one)
    with raises(ValueError, "gaussian_target: mean must have 3 element(s) for stats='channel' (e.g. shape [1, 3, 1]), got shape [2]"):
        call("channel", torch.zeros(2), torch.ones(3))
    with raises(ValueError, "gaussian_target: std must have 2 element(s) for stats='sample' (e.g. shape [2, 1, 1]), got shape []"):
        call("sample", torch.zeros(2), one)
    with raises(ValueError, "gaussian_target: std must have 1 element(s) for stats='batch' (e.g. shape [1, 1, 1]), got shape [3]"):
        call("batch", one, torch.ones(3))
    with raises(TypeError, "gaussian_target: mean must be a floating-point tensor, got torch.int64"):
        call(mean=torch.zeros((), dtype=torch.int64), std=one)
    with raises(ValueError, "gaussian_target: std must be on x's device cpu, got meta"):
        on_cpu_kernel(ops.gaussian_target, x, 1, 0, "batch", None, None, None, 0.0, one, torch.ones((), device="meta"))


@pytest.mark.parametrize("stats", ["batch", "sample", "channel"])
def test_gaussian_target_given_statistics_match_reference(stats):
    x = rand(2, 3, 4)
    shape = reference.stats_shape(x, stats)
    mean = torch.linspace(-1, 1, torch.Size(shape).numel(), dtype=torch.float64).reshape(shape)
    std = mean.abs() + 0.5
    out = ops.gaussian_target(x, 5, 7, stats, -2.0, 2.0, None, 0.0, mean, std)
    expected = reference.gaussian_target(x, seed=5, offset=7, stats=stats, mean=mean, std=std, clamp=(-2.0, 2.0))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_philox_stream_checks():
    with raises(ValueError, "philox_stream: offset must be >= 0, got -3"):
        ops.philox_stream(torch.empty(4), 0, -3)
    r0, r1, _, _ = reference.philox_randint4x(9, torch.arange(4) + 2)
    stream = ops.philox_stream(torch.empty(4), 9, 2)
    assert torch.equal(stream[:, 0], r0) and torch.equal(stream[:, 1], r1)

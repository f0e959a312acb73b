import math

import pytest
import torch
from conftest import available_backends, backend_params

from l2l_fast.ops import reference
from l2l_fast.ops import encoder_distance, encoder_distance_multi

BACKENDS = backend_params()
SHAPES = [(1, 1), (3, 7, 33), (8, 197, 768)]
DISTANCES = ["mse", "l2"]


def make(shape, dtype, device, seed=0, weight=True):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
    target = torch.randn(shape, generator=g).to(device, dtype)
    w = (torch.rand(shape[0], generator=g) + 0.5).to(device) if weight else None
    return student, target, w


def grads(fn, student, target, weight, distance, scale=None):
    out = fn(student, target, weight, distance=distance)
    loss = out.sum() if scale is None else (out * scale).sum()
    (g,) = torch.autograd.grad(loss, student)
    return out.detach(), g


def ref_fp32(student, target, weight, distance, scale=None):
    s = student.detach().float().requires_grad_()
    return grads(reference.encoder_distance, s, target.float(), weight, distance, scale)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES)
def test_hand_computed(backend, device, distance):
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [3.0, 2.0]], device=device)
    weight = torch.tensor([2.0, 0.5], device=device)
    out = encoder_distance(student, target, weight, distance=distance, backend=backend)
    out.sum().backward()
    if distance == "mse":
        expected = [2 * (1 + 4) / 2, 0.5 * (0 + 4) / 2]
        expected_grad = [[2 * 2 * 1 / 2, 2 * 2 * 2 / 2], [0.0, 0.5 * 2 * 2 / 2]]
    else:
        expected = [2 * math.sqrt(5), 0.5 * 2]
        expected_grad = [[2 / math.sqrt(5), 4 / math.sqrt(5)], [0.0, 0.5]]
    assert out.dtype == torch.float32 and out.shape == (2,)
    torch.testing.assert_close(out.cpu(), torch.tensor(expected))
    torch.testing.assert_close(student.grad.cpu(), torch.tensor(expected_grad))


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("distance", DISTANCES)
def test_fp32_matches_reference(backend, device, shape, distance):
    student, target, weight = make(shape, torch.float32, device)
    out, g = grads(lambda *a, **k: encoder_distance(*a, **k, backend=backend), student, target, weight, distance)
    ref_out, ref_g = ref_fp32(student, target, weight, distance)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(3, 7, 33), (4, 197, 64)], ids=str)
@pytest.mark.parametrize("distance", DISTANCES)
def test_low_precision_within_twice_the_naive_error(backend, device, dtype, shape, distance):
    """Error against an fp32 reference at most 2x that of the computation done
    naively in the low precision (flash-attention's criterion)."""
    student, target, weight = make(shape, dtype, device)
    out, g = grads(lambda *a, **k: encoder_distance(*a, **k, backend=backend), student, target, weight, distance)
    assert out.dtype == torch.float32 and g.dtype == dtype
    ref_out, ref_g = ref_fp32(student, target, weight, distance)

    def naive(s, t, w, distance):
        diff = (s - t).reshape(s.shape[0], -1)
        d = diff.square().mean(1) if distance == "mse" else diff.square().sum(1).sqrt()
        return d * w.to(dtype)

    naive_out, naive_g = grads(naive, student, target, weight, distance)
    eps = torch.finfo(dtype).eps
    out_err = (out - ref_out).abs().max().item()
    naive_out_err = (naive_out.float() - ref_out).abs().max().item()
    assert out_err <= 2 * naive_out_err + eps * ref_out.abs().max().item()
    g_err = (g.float() - ref_g).abs().max().item()
    naive_g_err = (naive_g.float() - ref_g).abs().max().item()
    assert g_err <= 2 * naive_g_err + eps * ref_g.abs().max().item()


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES)
def test_non_contiguous_input_and_grad_output(backend, device, distance):
    base_s = torch.randn(33, 6, device=device)
    base_t = torch.randn(33, 6, device=device)
    student = base_s.t().requires_grad_()  # [6, 33], transposed view
    target = base_t.t()
    assert not student.is_contiguous()
    scale = torch.linspace(-2, 3, 6, device=device)
    out, g = grads(lambda *a, **k: encoder_distance(*a, **k, backend=backend), student, target, None, distance, scale)
    ref_out, ref_g = ref_fp32(student, target, None, distance, scale)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_l2_zero_distance_row_has_zero_gradient(backend, device):
    student = torch.randn(3, 10, device=device)
    target = student.clone()
    target[1] += 1.0
    student.requires_grad_()
    out = encoder_distance(student, target, distance="l2", backend=backend)
    out.sum().backward()
    assert out[0].item() == 0.0 and out[2].item() == 0.0
    assert torch.equal(student.grad[0], torch.zeros(10, device=device))
    torch.testing.assert_close(student.grad[1], torch.full((10,), -1 / math.sqrt(10), device=device))


@pytest.mark.parametrize("backend, device", BACKENDS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_multi_matches_sum_over_maps(backend, device, distance, dtype):
    g = torch.Generator().manual_seed(1)
    shapes = [(4, 8, 6, 6), (4, 16, 3, 3), (4, 5), (4, 1, 7)]
    students = [torch.randn(s, generator=g).to(device, dtype).requires_grad_() for s in shapes]
    targets = [torch.randn(s, generator=g).to(device, dtype) for s in shapes]
    weight = torch.rand(4, generator=g).to(device)
    scale = torch.tensor([1.0, -0.5, 2.0, 0.25], device=device)
    out = encoder_distance_multi(students, targets, weight, distance=distance, backend=backend)
    got = torch.autograd.grad((out * scale).sum(), students)
    floats = [s.detach().float().requires_grad_() for s in students]
    ref = reference.encoder_distance_multi(floats, [t.float() for t in targets], weight, distance=distance)
    expected = torch.autograd.grad((ref * scale).sum(), floats)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out, ref.detach(), **tol)
    for a, b in zip(got, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, **tol)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_no_grad_needed_gives_values_only(backend, device):
    student, target, weight = make((3, 7, 33), torch.float32, device)
    with torch.no_grad():
        out = encoder_distance(student, target, weight, backend=backend)
    assert not out.requires_grad
    torch.testing.assert_close(out, reference.encoder_distance(student.detach(), target, weight))


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_errors_name_the_argument(backend, device):
    s = torch.randn(4, 5, device=device)
    t = torch.randn(4, 5, device=device)

    def call(*args, **kwargs):
        return encoder_distance(*args, **kwargs, backend=backend)

    with pytest.raises(ValueError, match="target must have student's shape"):
        call(s, torch.randn(4, 6, device=device))
    with pytest.raises(ValueError, match=r"weight must have shape \[4\]"):
        call(s, t, torch.ones(3, device=device))
    with pytest.raises(ValueError, match="target must not require grad"):
        call(s, t.clone().requires_grad_())
    with pytest.raises(ValueError, match="non-empty batch"):
        call(s[:0], t[:0])
    with pytest.raises(TypeError, match="student must be float32"):
        call(s.long(), t.long())
    with pytest.raises(TypeError, match="target must have student's dtype"):
        call(s, t.half())
    with pytest.raises(ValueError, match="distance must be one of"):
        call(s, t, distance="cosine")
    with pytest.raises(ValueError, match="target is on meta"):
        call(s, torch.empty(4, 5, device="meta"))
    with pytest.raises(ValueError, match="students and targets"):
        encoder_distance_multi([s], [], backend=backend)


def test_unavailable_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend 'cuda' is not available for cpu tensors"):
        encoder_distance(torch.randn(2, 3), torch.randn(2, 3), backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        encoder_distance(torch.randn(2, 3), torch.randn(2, 3), backend="fast")


def test_environment_variable_forces_a_backend(monkeypatch):
    from l2l_fast.ops import _backend

    monkeypatch.setenv("L2L_FAST_BACKEND", "reference")
    assert _backend.resolve("auto", torch.device("cpu")) == "reference"
    monkeypatch.setenv("L2L_FAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="L2L_FAST_BACKEND"):
        _backend.resolve("auto", torch.device("cpu"))


def test_backend_choice_is_cached_per_device_type_and_environment(monkeypatch):
    from l2l_fast.ops import _backend

    calls = []
    available = _backend.available

    def counting(backend, device):
        calls.append(backend)
        return available(backend, device)

    monkeypatch.setattr(_backend, "_resolved", {})
    monkeypatch.setattr(_backend, "available", counting)
    first = _backend.resolve("auto", torch.device("cpu"))
    assert calls
    calls.clear()
    assert _backend.resolve("auto", torch.device("cpu")) == first
    assert not calls, "a second call with the same device type and environment must not resolve again"
    monkeypatch.setenv("L2L_FAST_BACKEND", "reference")
    assert _backend.resolve("auto", torch.device("cpu")) == "reference"


def test_environment_variable_set_after_a_call_still_takes_effect(monkeypatch):
    from l2l_fast.ops import reference as reference_module

    ran_reference = []
    real = reference_module.encoder_distance

    def spy(*args, **kwargs):
        ran_reference.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_module, "encoder_distance", spy)
    student = torch.randn(3, 5, requires_grad=True)
    target = torch.randn(3, 5)

    def run():
        ran_reference.clear()
        out = encoder_distance(student, target)
        (g,) = torch.autograd.grad(out.sum(), student)
        torch.testing.assert_close(g, 2 * (student - target).detach() / 5)
        return bool(ran_reference)

    default_is_reference = run()
    monkeypatch.setenv("L2L_FAST_BACKEND", "reference")
    assert run()
    monkeypatch.setenv("L2L_FAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="L2L_FAST_BACKEND"):
        encoder_distance(student, target)
    monkeypatch.delenv("L2L_FAST_BACKEND")
    assert run() == default_is_reference
    if "cpu" in available_backends():
        assert not default_is_reference
        monkeypatch.setenv("L2L_FAST_BACKEND", "cuda")
        with pytest.raises(ValueError, match="backend 'cuda' is not available"):
            encoder_distance(student, target)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_uniform_grad_output_other_than_one(backend, device):
    """out.mean() passes one value (1/B) expanded: it must still scale the gradient."""
    student, target, weight = make((5, 3, 4), torch.float32, device)
    out = encoder_distance(student, target, weight, backend=backend)
    (g,) = torch.autograd.grad(out.mean(), student)
    s = student.detach().requires_grad_()
    (expected,) = torch.autograd.grad(reference.encoder_distance(s, target, weight).mean(), s)
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend, device", BACKENDS)
def test_multi_with_a_map_that_needs_no_grad(backend, device):
    g = torch.Generator().manual_seed(3)
    students = [torch.randn(4, 6, generator=g).to(device).requires_grad_(), torch.randn(4, 2, 3, generator=g).to(device)]
    targets = [torch.randn(s.shape, generator=g).to(device) for s in students]
    out = encoder_distance_multi(students, targets, backend=backend)
    (got,) = torch.autograd.grad(out.sum(), students[0])
    torch.testing.assert_close(got, 2 * (students[0] - targets[0]).detach() / 6)

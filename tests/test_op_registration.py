"""torch.library registration: opcheck on every compiled operator and
torch.compile(fullgraph=True) of a small unlearning loss against eager."""
import pytest
import torch

import l2l_fast
from l2l_fast.ops import encoder_distance, encoder_distance_multi, gaussian_target

COMPILED = [b for b in ("cpu", "triton") if l2l_fast.backends()[b]]
SUFFIX = {"cpu": "", "triton": "_triton"}


def op(backend, name):
    return getattr(torch.ops.l2l_fast, name + SUFFIX[backend])


def distance_samples():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for shape in ((1, 1), (3, 7, 33)):
            for distance in ("mse", "l2"):
                s = torch.randn(shape, generator=g).to(dtype).requires_grad_()
                t = torch.randn(shape, generator=g).to(dtype)
                yield (s, t, torch.rand(shape[0], generator=g), distance, True)
                yield (s.detach(), t, None, distance, False)


@pytest.mark.parametrize("backend", COMPILED)
def test_opcheck_encoder_distance(backend):
    for args in distance_samples():
        torch.library.opcheck(op(backend, "encoder_distance"), args)


@pytest.mark.parametrize("backend", COMPILED)
def test_opcheck_encoder_distance_multi(backend):
    g = torch.Generator().manual_seed(1)
    students = [torch.randn(s, generator=g).requires_grad_() for s in ((2, 3, 4, 4), (2, 5))]
    targets = [torch.randn(s.shape, generator=g) for s in students]
    torch.library.opcheck(op(backend, "encoder_distance_multi"), (students, targets, torch.rand(2), "mse", True))


@pytest.mark.parametrize("backend", COMPILED)
def test_opcheck_scale_rows_and_gaussian_target(backend):
    torch.library.opcheck(op(backend, "scale_rows"), (torch.randn(3, 4, 5), torch.randn(3)))
    x = torch.rand(2, 3, 4, 4)
    keep = torch.ones(2, 1, 4, 4).expand(2, 3, 4, 4)
    for stats in ("batch", "sample", "channel", "standard"):
        torch.library.opcheck(op(backend, "gaussian_target"), (x, 5, 17, stats, 0.0, 1.0, keep, 0.5))
    torch.library.opcheck(op(backend, "gaussian_target"), (x, 5, 0, "batch", None, None, None, 0.0))


@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_loss_matches_eager(backend):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    forget = torch.rand(4, 1, 8, 8, generator=g)
    teacher_out = torch.randn(8, 16, generator=g)
    maps = [torch.randn(8, 2, 3, 3, generator=g), torch.randn(8, 5, generator=g)]
    weight = torch.rand(8, generator=g)

    def loss(student, student_maps, offset):
        noise = gaussian_target(forget, seed=3, offset=offset, stats="batch", clamp=(0.0, 1.0), backend=backend)
        target = teacher_out + noise.reshape(4, -1)[:, :16].repeat(2, 1)
        single = encoder_distance(student, target, weight, backend=backend)
        multi = encoder_distance_multi(student_maps, maps, weight, distance="l2", backend=backend)
        return (single + multi).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager" if backend == "triton" else "inductor")
    for offset in (0, 256):
        student = torch.randn(8, 16, generator=g, requires_grad=True)
        student_maps = [torch.randn(m.shape, generator=g, requires_grad=True) for m in maps]
        eager = loss(student, student_maps, offset)
        eager_grads = torch.autograd.grad(eager, [student, *student_maps])
        got = compiled(student, student_maps, offset)
        got_grads = torch.autograd.grad(got, [student, *student_maps])
        torch.testing.assert_close(got, eager)
        for a, b in zip(got_grads, eager_grads):
            torch.testing.assert_close(a, b)


def test_installed_package_has_the_extension():
    """The suite must run against the built package, not a source tree without _C."""
    import l2l_fast._C  # noqa: F401

    assert l2l_fast.backends()["cpu"]

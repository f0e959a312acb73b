"""A benchmark's baseline runs none of the project's operators on its timed path: the
authors' step, built as the step benchmarks build it, calls no function of l2l_fast.ops
(the reference oracle included) and dispatches no l2l_fast:: operator. The same watch
catches the lean step and the loss-comparison mode, which do run them. The eager baselines
of the operator benchmarks and regression pairs run none either."""
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import l2l_fast.ops

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import authors_recipe  # noqa: E402
from eager_baselines import eager_loss, eager_noise  # noqa: E402
from step_models import CPU_RUNS, build_step  # noqa: E402

OPS_DIR = str(Path(l2l_fast.ops.__file__).resolve().parent)


class _ProjectOps(TorchDispatchMode):
    """Records every l2l_fast:: operator dispatched."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "l2l_fast":
            self.seen.add(f"{func.namespace}::{func._opname}")
        return func(*args, **(kwargs or {}))


def project_calls(run) -> set[str]:
    """Names of the l2l_fast.ops functions and l2l_fast:: operators `run()` reaches."""
    seen: set[str] = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(OPS_DIR):
            seen.add(f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}")

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        with _ProjectOps(seen):
            run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen


@pytest.mark.parametrize("name", list(CPU_RUNS))
def test_the_authors_step_runs_no_project_operator(name):
    step = build_step(name, "authors", "fp32", 2, "cpu")
    assert project_calls(step.run) == set()


def test_the_operator_baselines_run_no_project_operator():
    x = torch.rand(2, 3, 8, 8)
    keep = torch.ones(2, 1, 8, 8)
    keep[..., 2:6, 2:6] = 0
    assert project_calls(lambda: eager_noise(x, keep)) == set()
    student = torch.randn(2, 5, 4, requires_grad=True)
    assert project_calls(lambda: eager_loss(student, torch.randn(2, 5, 4), torch.ones(2)).sum().backward()) == set()


def test_the_watch_sees_the_lean_steps_operators():
    step = build_step("mae_fashion_mnist", "lean", "fp32", 2, "cpu")
    seen = project_calls(step.run)
    assert "l2l_fast::gaussian_target" in seen and "l2l_fast::encoder_distance" in seen


def test_the_watch_sees_the_reference_in_the_loss_comparison_mode(monkeypatch):
    original = authors_recipe.authors_step
    monkeypatch.setattr(authors_recipe, "authors_step",
                        lambda *args, **kwargs: original(*args, **kwargs, noise="project"))
    step = build_step("mae_fashion_mnist", "authors", "fp32", 2, "cpu")
    assert "reference.gaussian_target" in project_calls(step.run)

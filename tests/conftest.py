import os

# The Triton kernels run in interpreter mode on CPU tensors here; this must be
# set before any triton kernel is defined.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import l2l_fast  # noqa: E402
from l2l_fast.ops import _backend  # noqa: E402


def available_backends(device: str = "cpu") -> list[str]:
    names = ["reference", "cpu", "triton"] if device == "cpu" else ["cuda", "triton"]
    return [b for b in names if _backend.available(b, torch.device(device))]


def backend_params():
    """Every backend usable here: CPU-tensor backends, plus CUDA ones on a GPU."""
    params = [pytest.param(b, "cpu", id=f"{b}-cpu") for b in available_backends("cpu")]
    if torch.cuda.is_available():
        params += [pytest.param(b, "cuda", id=f"{b}-cuda") for b in available_backends("cuda")]
    return params


@pytest.fixture(autouse=True)
def _no_forced_backend(monkeypatch):
    monkeypatch.delenv(_backend.BACKEND_ENV, raising=False)

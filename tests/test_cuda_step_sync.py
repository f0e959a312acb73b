"""On a GPU, the unlearning steps between two reads never wait for the device:
torch's sync debug mode turns any host synchronisation inside them into an error."""
import pytest
import torch

import l2l_fast
from l2l_fast.training.monitor import StepMonitor

from conftest import FORGET, RETAIN, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


CASES = [("ours", precision) for precision in ("fp32", "bf16", "fp16")]
CASES += [(method, "bf16") for method in ("random_encoder", "max_loss", "noisy_label", "retain_label")]


@pytest.mark.parametrize("method, precision", CASES)
def test_cuda_steps_between_reads_do_not_synchronise(monkeypatch, method, precision):
    reads = []
    original_read = StepMonitor.read

    def read(self, deliver):
        torch.cuda.set_sync_debug_mode("default")
        reads.append(len(self.pending))
        original_read(self, deliver)
        torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(StepMonitor, "read", read)
    log = []
    try:  # the steps before the first read warm up the allocators and libraries unchecked
        l2l_fast.unlearn(tiny_model().cuda(), FORGET, RETAIN, steps=9, batch_size=4, lr=1e-3, mask="inpaint:2",
                         method=method, precision=precision, log_every=4, progress=False, callback=log.append)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert reads == [4, 4, 1] and [r["step"] for r in log] == list(range(9))

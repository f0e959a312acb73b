"""The fast-path options of unlearn against the plain fp32 step."""
import copy

import pytest
import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

import l2l_fast
from l2l_fast.adapters import adapter_for
from l2l_fast.models.masks import parse_mask
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

from conftest import FORGET, RETAIN, tiny_model

RUN = dict(steps=6, batch_size=4, lr=1e-3, mask="inpaint:2", progress=False)


def run(**options):
    log = []
    model = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, callback=log.append, **{**RUN, **options})
    return model, log


def assert_close_to_plain(model, log, plain, plain_log):
    """fp32 options: the same losses, and the same weight update up to rounding amplified
    by Adam (which divides each gradient by its own running size, so a near-zero gradient
    element's rounding can move that element by up to lr a step): the whole update within
    1e-3 of the plain one in norm. The attention key biases (true gradient 0: softmax
    ignores a shift of the keys) are left out: their movement is rounding alone."""
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in plain_log], rel=1e-5, abs=1e-7)
    start = tiny_model().encoder.state_dict()
    got_update, plain_update = [], []
    for key, value in plain.encoder.state_dict().items():
        got, begin = model.encoder.state_dict()[key], start[key]
        if key.endswith("attn.qkv.bias"):
            dim = value.shape[0] // 3
            torch.testing.assert_close(got[dim:2 * dim], value[dim:2 * dim], atol=RUN["lr"] * RUN["steps"], rtol=0)
            keep = torch.ones_like(value, dtype=torch.bool)
            keep[dim:2 * dim] = False
            got, value, begin = got[keep], value[keep], begin[keep]
        got_update.append((got - begin).flatten())
        plain_update.append((value - begin).flatten())
    got_update, plain_update = torch.cat(got_update), torch.cat(plain_update)
    assert (got_update - plain_update).norm() <= 1e-3 * plain_update.norm()


def update(model) -> torch.Tensor:
    start = tiny_model().encoder.state_dict()
    return torch.cat([(v - start[k]).flatten() for k, v in model.encoder.state_dict().items()])


@pytest.fixture(scope="module")
def plain():
    return run(precision="fp32")


@pytest.mark.parametrize("precision, cosine", [("bf16", 0.75), ("fp16", 0.95)])
def test_low_precision_follows_the_fp32_run(plain, precision, cosine):
    """Same losses within low-precision error, and the same direction of the update."""
    model, log = run(precision=precision)
    plain_model, plain_log = plain
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in plain_log], rel=0.15)
    assert torch.nn.functional.cosine_similarity(update(model), update(plain_model), dim=0) > cosine
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_low_precision_step_loss_and_gradients():
    model = tiny_model()
    adapter = adapter_for(model)
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(0)
    s = StepInputs(adapter=adapter, retain=RETAIN[:4], forget=FORGET[:4],
                              corruption=adapter.draw(parse_mask("inpaint:2"), 8, g), alpha=0.25, distance="mse",
                              noise_seed=0, noise_offset=0, noise_stats="batch", noise_clamp=None)
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    loss, _, _ = objectives.ours(s, StepModels(model.encoder, teacher))
    grads = torch.autograd.grad(loss, params)
    low_teacher = copy.deepcopy(teacher).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _, _ = objectives.ours(s, StepModels(model.encoder, low_teacher))
    low_grads = torch.autograd.grad(low, params)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss.item(), rel=5e-2)
    flat, low_flat = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in low_grads])
    assert torch.nn.functional.cosine_similarity(flat, low_flat, dim=0) > 0.99


def test_activation_checkpointing_gives_the_same_bits(plain):
    model, log = run(precision="fp32", checkpoint_activations=True)
    assert [r["loss"] for r in log] == [r["loss"] for r in plain[1]]
    assert all(torch.equal(v, plain[0].state_dict()[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, CheckpointWrapper) for m in model.modules())  # unwrapped after the run


class CountingAdapter(type(adapter_for(tiny_model()))):
    def __init__(self, model, teacher_batches):
        super().__init__(model)
        self.teacher_batches = teacher_batches

    def encode(self, encoder, images, corruption):
        if encoder is not self.encoder:
            self.teacher_batches.append(images.shape[0])
        return super().encode(encoder, images, corruption)


def test_cached_targets_skip_the_teacher_on_seen_retain_images(plain):
    batches = []
    model = tiny_model()
    log = []
    l2l_fast.unlearn(model, FORGET, RETAIN, adapter=CountingAdapter(model, batches), cache_targets=True,
                     precision="fp32", callback=log.append, **RUN)
    # 12 retain images, 4 a step: the first 3 steps see them all once (teacher on 4 + 4 rows);
    # afterwards the teacher only encodes the 4 forget noise images.
    assert batches == [8, 8, 8, 4, 4, 4]
    assert_close_to_plain(model, log, *plain)


@pytest.mark.slow
def test_compiled_encoder_follows_the_plain_run(plain):
    torch._dynamo.reset()
    model, log = run(precision="fp32", compile=True)
    assert_close_to_plain(model, log, *plain)


@pytest.mark.parametrize("options, message", [
    (dict(precision="fp8"), "precision must be one of"),
    (dict(cache_targets=True, mask="random:0.5"), "cache_targets needs"),
    (dict(cache_targets=True, mask="mage"), "cache_targets needs"),
    (dict(mask="hybrid"), "mask 'hybrid': .*pixel mask"),
    (dict(cache_targets=True, method="random_encoder"), "cache_targets applies to method 'ours'"),
])
def test_option_errors(options, message):
    with pytest.raises(ValueError, match=message):
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **{**RUN, **options})

"""The baselines' losses on a hand-made batch, `adapt` on a user's conv autoencoder,
and every method end to end."""
import copy

import pytest
import torch
from torch import nn

import l2l_fast
from l2l_fast.models.masks import parse_mask
from l2l_fast.ops import reference
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.config import ENCODER_METHODS, METHODS
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

from conftest import AE_FORGET, AE_RETAIN, ConvAutoencoder, autoencoder


def step_inputs(adapter, alpha=0.5):
    g = torch.Generator().manual_seed(0)
    retain, forget = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g) + 0.5
    corruption = adapter.draw(parse_mask("inpaint:2"), 6, g)
    return StepInputs(adapter=adapter, retain=retain, forget=forget, corruption=corruption,
                                 alpha=alpha, distance="mse", noise_seed=11, noise_offset=64,
                                 noise_stats="batch", noise_clamp=None)


def hole_mse(model, images, keep, targets):
    out = model(images * keep)
    hole = 1 - keep
    return ((out - targets) ** 2 * hole).sum() / hole.sum()


def test_adapt_corruption_is_a_centre_hole():
    _, adapter = autoencoder()
    keep = adapter.draw(parse_mask("inpaint:2"), 1, None)
    expected = torch.ones(1, 1, 8, 8)
    expected[..., 2:6, 2:6] = 0
    assert torch.equal(keep, expected)


def test_max_loss_by_hand():
    model, adapter = autoencoder()
    s = step_inputs(adapter)
    loss, retain, forget = objectives.max_loss(s, StepModels())
    keep_r, keep_f = s.corruption[:3], s.corruption[3:]
    expected_r = hole_mse(model, s.retain, keep_r, s.retain)
    expected_f = hole_mse(model, s.forget, keep_f, s.forget)
    torch.testing.assert_close(loss, expected_r - 0.5 * expected_f)
    torch.testing.assert_close(retain, expected_r.detach())


def test_noisy_label_by_hand():
    model, adapter = autoencoder()
    s = step_inputs(adapter)
    loss, _, _ = objectives.noisy_label(s, StepModels())
    noise = reference.gaussian_target(s.forget, seed=11, offset=64, stats="batch")
    expected = hole_mse(model, s.retain, s.corruption[:3], s.retain) + 0.5 * hole_mse(model, s.forget, s.corruption[3:], noise)
    torch.testing.assert_close(loss, expected)


def test_retain_label_targets_are_the_original_models_retain_outputs():
    model, adapter = autoencoder()
    original = copy.copy(adapter)
    original.model = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder[2].bias.add_(0.3)  # the model being trained has drifted from the original
    s = step_inputs(adapter)
    loss, _, _ = objectives.retain_label(s, StepModels(reference=original))
    keep_r = s.corruption[:3]
    with torch.no_grad():
        donors = keep_r * s.retain + (1 - keep_r) * original.model(s.retain * keep_r)
    expected = hole_mse(model, s.retain, keep_r, s.retain) + 0.5 * hole_mse(model, s.forget, s.corruption[3:], donors)
    torch.testing.assert_close(loss, expected)


def test_random_encoder_targets_are_gaussian_with_the_teachers_statistics():
    model, adapter = autoencoder()
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():
        model.encoder[0].weight.mul_(1.1)
    s = step_inputs(adapter)
    loss, retain, forget = objectives.random_encoder(s, StepModels(model.encoder, teacher))
    student = model.encoder(torch.cat([s.retain, s.forget]) * s.corruption)
    with torch.no_grad():
        teacher_out = teacher(torch.cat([s.retain, s.forget]) * s.corruption)
    gauss = reference.gaussian_target(teacher_out[3:], seed=11, offset=64, stats="batch")
    d_r = (student[:3] - teacher_out[:3]).square().mean(dim=(1, 2, 3))
    d_f = (student[3:] - gauss).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(loss, d_r.mean() + 0.5 * d_f.mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(forget, d_f.mean().detach(), rtol=1e-5, atol=1e-7)




def test_adapted_user_model_unlearns_only_its_encoder():
    model, adapter = autoencoder()
    decoder = copy.deepcopy(model.decoder.state_dict())
    encoder = copy.deepcopy(model.encoder.state_dict())
    log = []
    l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, steps=60, batch_size=4, lr=3e-2,
                     mask="inpaint:2", progress=False, callback=log.append)
    assert all(torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())
    assert not torch.equal(encoder["0.weight"], model.encoder.state_dict()["0.weight"])
    forget = [r["forget"] for r in log]
    retain = [r["retain"] for r in log]
    assert sum(forget[-10:]) < 0.5 * sum(forget[:10])
    assert retain[-1] < max(retain) and sum(retain[-10:]) < sum(retain[10:20])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_is_seeded(method):
    results = []
    for _ in range(2):
        model, adapter = autoencoder()
        before = copy.deepcopy(model.state_dict())
        l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, method=method, steps=3, batch_size=4,
                         lr=1e-2, mask="inpaint:2", progress=False)
        results.append(model.state_dict())
    decoder_same = all(torch.equal(before[k], results[0][k]) for k in before if k.startswith("decoder"))
    assert decoder_same == (method in ENCODER_METHODS)
    assert not torch.equal(before["encoder.0.weight"], results[0]["encoder.0.weight"])
    assert all(torch.equal(v, results[1][k]) for k, v in results[0].items())


def test_unknown_method_is_rejected():
    model, adapter = autoencoder()
    with pytest.raises(ValueError, match="method must be one of"):
        l2l_fast.unlearn(model, AE_FORGET, AE_RETAIN, adapter=adapter, method="forget_harder", steps=1, batch_size=2)


def test_adapt_errors():
    model = ConvAutoencoder()
    with pytest.raises(ValueError, match="no submodule 'backbone'"):
        l2l_fast.adapt(model, "backbone", image_shape=(1, 8, 8), patch_size=2)
    with pytest.raises(ValueError, match="not a submodule"):
        l2l_fast.adapt(model, nn.Linear(2, 2), image_shape=(1, 8, 8), patch_size=2)
    with pytest.raises(ValueError, match="patch_size 3"):
        l2l_fast.adapt(model, "encoder", image_shape=(1, 8, 8), patch_size=3)

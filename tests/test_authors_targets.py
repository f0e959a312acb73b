"""The authors' forget target for Palette and their noise statistics for MAGE, each
against their formula written out by hand on one batch."""
import pytest
import torch

import l2l_fast
from l2l_fast.adapters import DiffusionAdapter
from l2l_fast.models.masks import parse_mask
from l2l_fast.ops import reference
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.config import UnlearnConfig
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import UnlearnRecipe, frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

from conftest import images, palette_model as tiny_model

ALPHA = 0.25


def palette_step(target: str = "pure_noise", spec: str = "inpaint:2"):
    model = tiny_model()
    adapter = DiffusionAdapter(model)
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    retain, forget = images(3, 1), images(2, 2, 0.3)
    s = StepInputs(adapter=adapter, retain=retain, forget=forget, corruption=adapter.draw(parse_mask(spec), 5, g),
                   alpha=ALPHA, distance="mse", noise_seed=9, noise_offset=0, noise_stats="batch",
                   noise_clamp=None, diffusion_target=target)
    return model, adapter, teacher, s


def authors_palette_loss(model, teacher, s):
    """Network.forward(fix_decoder=True), learn_noise=0, max_loss=0, in their notation:
    mask = 1 in the hole, labels +1 retain / -1 forget, y_cond = y_0 (1 - mask) + mask ε_cond,
    q_sample -> y_noisy = √γ y_0 (l + 1)/2 + √(1-γ) ε + (1 - √(1-γ)) ε (1 - l)/2 for the teacher,
    y_noise_original = √γ y_0 + √(1-γ) ε for the student, both pasted as y·mask + (1-mask)·y_0;
    the same γ and ε for both. Per-map MSE, summed over maps, with clean per-subset means."""
    c = s.corruption
    x = torch.cat([s.retain, s.forget])
    y_0 = 2 * x - 1
    mask = 1 - c.pixel
    labels = torch.tensor([1.0] * s.num_retain + [-1.0] * s.forget.shape[0]).view(-1, 1, 1, 1)
    g = c.gamma.view(-1, 1, 1, 1)
    y_cond = y_0 * (1 - mask) + mask * c.cond_noise
    y_noisy = (g.sqrt() * y_0 * (labels + 1) * 0.5 + (1 - g).sqrt() * c.noise
               + (1 - (1 - g).sqrt()) * c.noise * (1 - labels) * 0.5)
    y_original = g.sqrt() * y_0 + (1 - g).sqrt() * c.noise
    with torch.no_grad():
        target, _ = teacher(torch.cat([y_cond, y_noisy * mask + (1 - mask) * y_0], dim=1), c.gamma)
    student, _ = model.encoder(torch.cat([y_cond, y_original * mask + (1 - mask) * y_0], dim=1), c.gamma)
    per_sample = sum((a - b).square().flatten(1).mean(1) for a, b in zip(student, target))
    retain, forget = per_sample[: s.num_retain].mean(), per_sample[s.num_retain:].mean()
    return retain + ALPHA * forget, retain, forget


def loss_with_forget_input(model, adapter, teacher, s, forget_input):
    """Ours written out: the teacher on [retain; forget_input], the student on [retain; forget],
    per-map MSE summed over maps, clean per-subset means."""
    c = s.corruption
    with torch.no_grad():
        target = adapter.encode(teacher, torch.cat([s.retain, forget_input]), c)
    student = adapter.encode(model.encoder, torch.cat([s.retain, s.forget]), c)
    per_sample = sum((a - b).square().flatten(1).mean(1) for a, b in zip(student, target))
    return per_sample[:3].mean() + ALPHA * per_sample[3:].mean()


def encoder_grads(loss, model):
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("spec", ["inpaint:2", "hybrid"])
def test_palette_forget_target_is_the_authors(spec):
    model, adapter, teacher, s = palette_step(spec=spec)
    ours = objectives.ours(s, StepModels(model.encoder, teacher))
    theirs = authors_palette_loss(model, teacher, s)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(encoder_grads(ours[0], model), encoder_grads(theirs[0], model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_noise_image_target_is_the_noised_gaussian_image():
    """The option keeps the previous target: the teacher on the forget image whose hole
    is the noise image n, noised as √γ n + √(1-γ) ε; and it is not the authors'."""
    model, adapter, teacher, s = palette_step("noise_image")
    ours = objectives.ours(s, StepModels(model.encoder, teacher))
    c = s.corruption
    n = reference.gaussian_target(s.forget, seed=9, offset=0, stats="batch")
    forget_input = torch.where(c.pixel[s.num_retain:].bool(), s.forget, n)
    torch.testing.assert_close(ours[0], loss_with_forget_input(model, adapter, teacher, s, forget_input),
                               rtol=1e-5, atol=1e-7)
    model, _, teacher, s = palette_step("pure_noise")
    authors = objectives.ours(s, StepModels(model.encoder, teacher))
    assert not torch.allclose(ours[2], authors[2])


def test_whole_noise_target_is_the_teacher_on_a_whole_gaussian_image():
    """The condition's visible part comes from the noise image too, so the target differs
    from the student's input even where γ is near 0 (y_t almost all noise)."""
    model, adapter, teacher, s = palette_step("whole_noise")
    ours = objectives.ours(s, StepModels(model.encoder, teacher))
    n = reference.gaussian_target(s.forget, seed=9, offset=0, stats="batch")
    torch.testing.assert_close(ours[0], loss_with_forget_input(model, adapter, teacher, s, n), rtol=1e-5, atol=1e-7)
    model, _, teacher, s = palette_step("noise_image")
    hole_only = objectives.ours(s, StepModels(model.encoder, teacher))
    assert not torch.allclose(ours[2], hole_only[2])


def test_diffusion_target_option_is_checked_and_recorded():
    assert UnlearnConfig(steps=1, batch_size=1).diffusion_target == "pure_noise"
    config = UnlearnConfig(steps=1, batch_size=1, diffusion_target="noise_image")
    assert config.recorded()["diffusion_target"] == "noise_image"
    with pytest.raises(ValueError, match="diffusion_target must be one of"):
        UnlearnConfig(steps=1, batch_size=1, diffusion_target="pure")


@pytest.mark.parametrize("mask", ["inpaint:2", "hybrid"])
def test_unlearn_runs_with_either_palette_target(mask):
    forget, retain = images(4, 5, 0.3), images(4, 6)
    run = dict(steps=2, batch_size=2, mask=mask, progress=False, seed=1)
    a = l2l_fast.unlearn(tiny_model(), forget, retain, **run)
    b = l2l_fast.unlearn(tiny_model(), forget, retain, diffusion_target="noise_image", **run)
    assert any(not torch.equal(x, y) for x, y in zip(a.encoder.parameters(), b.encoder.parameters()))


# noise statistics over the mixed batch

def test_mixed_noise_statistics_by_hand():
    """The authors' MAGE code: n = clamp(randn · std(samples) + mean(samples), 0, 1) over
    the whole retain + forget batch; here with the project's seeded stream z."""
    g = torch.Generator().manual_seed(0)
    retain, forget = torch.rand(3, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g) * 0.5
    for clamp in (None, (0.0, 1.0)):
        s = StepInputs(adapter=None, retain=retain, forget=forget, corruption=None, alpha=ALPHA, distance="mse",
                       noise_seed=4, noise_offset=32, noise_stats="mixed", noise_clamp=clamp)
        z = reference.gaussian_target(forget, seed=4, offset=32, stats="standard")
        everything = torch.cat([retain, forget]).double()
        expected = everything.mean() + everything.std() * z.double()
        if clamp is not None:
            expected = expected.clamp(*clamp)
        torch.testing.assert_close(s.noise(forget), expected.float(), rtol=1e-5, atol=1e-6)
    batch_only = StepInputs(adapter=None, retain=retain, forget=forget, corruption=None, alpha=ALPHA,
                            distance="mse", noise_seed=4, noise_offset=32, noise_stats="batch", noise_clamp=None)
    assert not torch.allclose(batch_only.noise(forget), s.noise(forget))
    assert UnlearnConfig(steps=1, batch_size=1, noise_stats="mixed").recorded()["noise_stats"] == "mixed"


# the forget term on the deepest maps only

def test_forget_maps_puts_the_forget_term_on_the_last_maps_only():
    """Written out: retain rows over every map, forget rows over the last N maps, per-map MSE,
    clean per-subset means; N = all the maps is the default loss."""
    model, adapter, teacher, s = palette_step("whole_noise")
    n = reference.gaussian_target(s.forget, seed=9, offset=0, stats="batch")
    c = s.corruption
    with torch.no_grad():
        target = adapter.encode(teacher, torch.cat([s.retain, n]), c)
    student = adapter.encode(model.encoder, torch.cat([s.retain, s.forget]), c)
    maps = len(student)
    assert maps > 2
    for last in (1, 2, maps):
        s.forget_maps = last
        ours = objectives.ours(s, StepModels(model.encoder, teacher))
        retain = sum((a - b).square().flatten(1).mean(1) for a, b in zip(student, target))[:3].mean()
        forget = sum((a - b).square().flatten(1).mean(1)
                     for a, b in zip(student[maps - last:], target[maps - last:]))[3:].mean()
        torch.testing.assert_close(ours[0], retain + ALPHA * forget, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours[2], forget, rtol=1e-5, atol=1e-7)
    s.forget_maps = None
    torch.testing.assert_close(objectives.ours(s, StepModels(model.encoder, teacher))[0],
                               loss_with_forget_input(model, adapter, teacher, s, n), rtol=1e-5, atol=1e-7)
    s.forget_maps = maps + 1
    with pytest.raises(ValueError, match=f"forget_maps {maps + 1}: this model's encoder gives {maps} feature maps"):
        objectives.ours(s, StepModels(model.encoder, teacher))


def test_forget_maps_is_checked_and_refused_where_it_cannot_apply(monkeypatch):
    assert UnlearnConfig(steps=1, batch_size=1, forget_maps=1).recorded()["forget_maps"] == 1
    with pytest.raises(ValueError, match="forget_maps must be"):
        UnlearnConfig(steps=1, batch_size=1, forget_maps=0)
    with pytest.raises(ValueError, match=r"forget_maps applies to methods \(.*\), not 'noisy_label'"):
        UnlearnConfig(steps=1, batch_size=1, forget_maps=1, method="noisy_label")
    monkeypatch.setattr(UnlearnRecipe, "train", lambda self: pytest.fail("refused only once training began"))
    with pytest.raises(ValueError, match="forget_maps 1: this model's encoder gives 1 feature map;"):
        demo = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        l2l_fast.unlearn(l2l_fast.load_model("demo"), demo[:2], demo[2:], steps=1, batch_size=2, forget_maps=1,
                         progress=False)
    model, adapter, _, s = palette_step("whole_noise")
    maps = len(adapter.encode(model.encoder, torch.cat([s.retain, s.forget]), s.corruption))
    with pytest.raises(ValueError, match=f"forget_maps {maps + 1}: this model's encoder gives {maps} feature maps"):
        l2l_fast.unlearn(model, s.forget, s.retain, steps=1, batch_size=2, mask="inpaint:2", forget_maps=maps + 1,
                         progress=False)

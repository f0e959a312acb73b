"""The benchmark's re-creation of the authors' recipe: with the project's noise it computes
the lean step's loss on the same batch (fp32), so speed comparisons compare like with like;
with the authors' noise it computes their formulas (randn_like noise with the statistics of
the whole batch, clamped; Palette's pure-ε forget target), written out here by hand."""
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from l2l_fast.adapters import adapter_for
from l2l_fast.models import MAE, MAGE, PaletteUNet
from l2l_fast.models.masks import parse_mask
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import authors_recipe  # noqa: E402
from authors_recipe import authors_step, authors_train_step  # noqa: E402

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=4,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
TINY_MAGE = dict(img_size=16, embed_dim=32, depth=1, num_heads=4, decoder_embed_dim=16, decoder_depth=1,
                 decoder_num_heads=2, tokenizer=dict(in_chans=1, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1,
                                                     z_channels=8, n_embed=16, norm_groups=4))
TINY_PALETTE = dict(image_size=16, in_channel=2, out_channel=1, inner_channel=8, channel_mults=(1, 2), res_blocks=1,
                    attn_res=(2,), num_head_channels=4, norm_groups=4,
                    beta_schedule={"train": {"schedule": "linear", "n_timestep": 20, "linear_start": 1e-4,
                                             "linear_end": 0.2}})


def _setup(family, distance="mse", mask="random:0.5"):
    """A model whose student has moved away from its teacher, and one step's inputs."""
    torch.manual_seed(0)
    model = {"mae": lambda: MAE(**TINY), "vq": lambda: MAGE(**TINY_MAGE),
             "diffusion": lambda: PaletteUNet(**TINY_PALETTE)}[family]()
    adapter = adapter_for(model)
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    s = StepInputs(
        adapter=adapter, retain=torch.rand(4, 1, 16, 16, generator=g), forget=torch.rand(3, 1, 16, 16, generator=g),
        corruption=adapter.draw(parse_mask(mask), 7, g), alpha=0.25, distance=distance,
        noise_seed=5, noise_offset=1000, noise_stats="batch", noise_clamp=None)
    return model, adapter, teacher, s


@pytest.mark.parametrize("family", ["mae", "vq", "diffusion"])
@pytest.mark.parametrize("distance", ["mse", "l2"])
def test_project_noise_gives_the_lean_steps_loss_and_gradients(family, distance):
    model, _, teacher, s = _setup(family, distance, "inpaint:2" if family == "diffusion" else "random:0.5")
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    lean = objectives.ours(s, StepModels(model.encoder, teacher))
    lean_grads = torch.autograd.grad(lean[0], params, allow_unused=True)
    authors = authors_step(s, model.encoder, teacher, noise="project")
    authors_grads = torch.autograd.grad(authors[0], params, allow_unused=True)
    for a, b in zip(lean, authors):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(lean_grads, authors_grads):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def _mse_rows(a, b):
    return (a - b).reshape(a.shape[0], -1).square().mean(1)


@pytest.mark.parametrize("family", ["mae", "vq"])
def test_authors_noise_is_randn_like_with_the_whole_batchs_statistics_clamped(family):
    model, adapter, teacher, s = _setup(family)
    torch.manual_seed(123)
    loss, retain, forget = authors_step(s, model.encoder, teacher)
    images = torch.cat([s.retain, s.forget])
    torch.manual_seed(123)
    noise = torch.clamp(torch.randn(images.shape) * images.std() + images.mean(), 0.0, 1.0)
    with torch.no_grad():
        student = adapter.encode(model.encoder, adapter.prepare(images), s.corruption)
        real = adapter.encode(teacher, adapter.prepare(images), s.corruption)
        fake = adapter.encode(teacher, adapter.prepare(noise), s.corruption)
    expected_retain = _mse_rows(student, real)[:4].mean()
    expected_forget = _mse_rows(student, fake)[4:].mean()
    torch.testing.assert_close(retain, expected_retain, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(forget, expected_forget, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.detach(), expected_retain + 0.25 * expected_forget, rtol=1e-5, atol=1e-7)


def test_authors_palette_target_is_pure_noise_in_the_hole_of_forget_rows():
    """Their q_sample with labels (+1 retain, -1 forget), their teacher and student inputs
    (mask = 1 in the hole), written out as in i2i_Palette's Network.forward(fix_decoder=True)."""
    model, adapter, teacher, s = _setup("diffusion", mask="inpaint:2")
    _, retain, forget = authors_step(s, model.encoder, teacher)
    c = s.corruption
    y_0 = torch.cat([s.retain, s.forget]) * 2 - 1
    mask = 1 - c.pixel
    labels = torch.tensor([1.0] * 4 + [-1.0] * 3).view(-1, 1, 1, 1)
    g = c.gamma.view(-1, 1, 1, 1)
    eps = c.noise
    y_noisy = g.sqrt() * y_0 * (labels + 1) * 0.5 + (1 - g).sqrt() * eps + (1 - (1 - g).sqrt()) * eps * (1 - labels) * 0.5
    y_original = g.sqrt() * y_0 + (1 - g).sqrt() * eps
    y_cond = y_0 * (1 - mask) + mask * c.cond_noise
    with torch.no_grad():
        target, _ = teacher(torch.cat([y_cond, y_noisy * mask + (1 - mask) * y_0], 1), c.gamma)
        student, _ = model.encoder(torch.cat([y_cond, y_original * mask + (1 - mask) * y_0], 1), c.gamma)
    per_sample = sum(_mse_rows(a, b) for a, b in zip(student, target))
    torch.testing.assert_close(retain, per_sample[:4].mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(forget, per_sample[4:].mean(), rtol=1e-5, atol=1e-7)
    # the lean step's default target is theirs; its "noise_image" option is not
    lean = objectives.ours(s, StepModels(model.encoder, teacher))
    torch.testing.assert_close(lean[2], forget, rtol=1e-5, atol=1e-7)
    other = objectives.ours(dataclasses.replace(s, diffusion_target="noise_image"), StepModels(model.encoder, teacher))
    assert not torch.allclose(other[2], forget, rtol=1e-3)


def test_noise_must_be_named():
    model, _, teacher, s = _setup("mae")
    with pytest.raises(ValueError, match="noise must be one of"):
        authors_step(s, model.encoder, teacher, noise="philox")


@pytest.mark.parametrize("family", ["mae", "diffusion"])
def test_authors_optimizer_is_torchs_cuda_default_foreach_on_any_device(family):
    """torch's default on a CPU is the single-tensor loop; on the authors' GPU it is foreach."""
    model, adapter, teacher, _ = _setup(family)
    step = authors_train_step(adapter, model.encoder, teacher, torch.float32, lr=1e-4, grad_clip=3.0)
    assert authors_recipe.OPTIMIZER_IMPL == "foreach"
    assert step.optimizer.defaults["foreach"] is True and not step.optimizer.defaults.get("fused")
    assert type(step.optimizer) is (torch.optim.Adam if family == "diffusion" else torch.optim.AdamW)

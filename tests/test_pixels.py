"""Pixel conventions: [0, 1] in and out of every adapter, the model's own normalisation
in between, noise drawn in [0, 1] space, clamped for bounded models, then normalised."""
import pytest
import torch
from conftest import FORGET, RETAIN, tiny_model

from l2l_fast import load_model
from l2l_fast.adapters import adapter_for
from l2l_fast.training.files import save_tensors
from l2l_fast.models import PaletteUNet, save_model
from l2l_fast.models.masks import parse_mask, patch_keep
from l2l_fast.models.pixels import IDENTITY, IMAGENET, Pixels, SYMMETRIC
from l2l_fast.ops import reference
from l2l_fast.unlearning.config import UnlearnConfig
from l2l_fast.unlearning.objectives import StepModels, ours
from l2l_fast.unlearning.recipe import UnlearnRecipe, frozen_teacher

GREY = Pixels((0.4,), (0.3,), bounded=True)


def test_normalize_is_the_formula_and_inverts():
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)) / torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    torch.testing.assert_close(IMAGENET.normalize(x), expected)
    torch.testing.assert_close(IMAGENET.denormalize(expected), x)
    assert IDENTITY.normalize(x) is x and IDENTITY.denormalize(x) is x
    torch.testing.assert_close(SYMMETRIC.normalize(x), 2 * x - 1)


@pytest.mark.parametrize("mean, std", [((0.5, 0.5), (0.2, 0.2, 0.2)), ((0.5,), (0.0,)), ((), (1.0,))])
def test_bad_conventions_are_refused(mean, std):
    with pytest.raises(ValueError, match="pixel_"):
        Pixels(mean, std)


def test_checkpoints_keep_the_convention_and_old_ones_read_as_before(tmp_path):
    model = tiny_model()
    model.pixels = GREY
    save_model(model, tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").pixels == GREY
    # written before conventions existed: no pixel keys
    save_tensors(model.state_dict(), {"family": "mae", "config": model.config}, tmp_path / "old.safetensors")
    assert load_model(tmp_path / "old.safetensors").pixels == IDENTITY
    palette = PaletteUNet(image_size=8, in_channel=2, out_channel=1, inner_channel=8, channel_mults=[1], res_blocks=1,
                          attn_res=[], num_head_channels=8, norm_groups=8)
    save_tensors(palette.state_dict(), {"family": "diffusion", "config": palette.config}, tmp_path / "p.safetensors")
    assert load_model(tmp_path / "p.safetensors").pixels == SYMMETRIC  # the [-1, 1] its adapter always used


def test_identity_models_generate_exactly_as_the_model_does():
    model = tiny_model()
    keep = patch_keep(parse_mask("inpaint:2"), model.grid, len(RETAIN), torch.Generator().manual_seed(0))
    assert torch.equal(adapter_for(model).generate(RETAIN, keep), model.generate(RETAIN, keep))


def test_mae_adapter_normalises_in_and_out():
    model = tiny_model()
    model.pixels = GREY
    adapter = adapter_for(model)
    images, targets = RETAIN[:10], FORGET
    keep = patch_keep(parse_mask("inpaint:2"), model.grid, len(images), torch.Generator().manual_seed(0))
    x = (images - 0.4) / 0.3
    torch.testing.assert_close(adapter.encode(model.encoder, adapter.prepare(images), keep), model.encoder(x, keep))
    torch.testing.assert_close(adapter.task_loss(images, keep, targets), model.loss(x, keep, (targets - 0.4) / 0.3))
    with torch.no_grad():
        filled = model.unpatchify(model(x, keep)) * 0.3 + 0.4
    hole = ~keep.view(-1, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    expected = torch.where(hole, filled.clamp(0, 1), images)
    assert filled.min() < 0 or filled.max() > 1  # the clamp of a bounded model's generations is exercised
    torch.testing.assert_close(adapter.generate(images, keep), expected)


@pytest.mark.parametrize("pixels, clamp", [(GREY, (0.0, 1.0)), (Pixels((0.4,), (0.3,)), None)])
def test_the_teacher_sees_noise_drawn_in_image_space_then_normalised(pixels, clamp):
    model = tiny_model()
    model.pixels = pixels
    config = UnlearnConfig(steps=1, batch_size=4, mask="inpaint:2", seed=3, progress=False, precision="fp32")
    recipe = UnlearnRecipe(model, FORGET, RETAIN, config)
    recipe.setup()
    try:
        s = recipe.inputs(0)
        assert s.noise_clamp == clamp
        seen = []
        encode = recipe.adapter.encode
        recipe.adapter.encode = lambda encoder, inputs, corruption: seen.append(inputs) or encode(encoder, inputs,
                                                                                                    corruption)
        teacher = frozen_teacher(model.encoder)
        ours(s, StepModels(student=model.encoder, reference=teacher))
    finally:
        recipe.close()
    keep = recipe.adapter.pixel_keep(s.part("forget"))
    noise = reference.gaussian_target(s.forget, seed=s.noise_seed, offset=s.noise_offset, stats="batch",
                                      clamp=clamp, keep=keep)
    assert (noise.min() >= 0 and noise.max() <= 1) if clamp else (noise.min() < 0 or noise.max() > 1)
    teacher_input = seen[1]
    torch.testing.assert_close(teacher_input[s.num_retain:], (noise - 0.4) / 0.3, atol=1e-5, rtol=0)
    torch.testing.assert_close(teacher_input[: s.num_retain], (s.retain - 0.4) / 0.3)

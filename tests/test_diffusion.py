"""The Palette-style diffusion family: UNet split, Palette's noising and loss,
DDPM/DDIM sampling, the adapter's unlearning inputs, official checkpoints."""
import copy
import math

import pytest
import torch

import l2l_fast
from l2l_fast import load_model
from l2l_fast.adapters import DiffusionAdapter
from l2l_fast.evaluation.generation import generate, visible_pixels
from l2l_fast.models import PaletteUNet, save_model
from l2l_fast.models.masks import parse_mask
from l2l_fast.models.palette_blocks import AttentionBlock
from l2l_fast.models.palette_official import load_official_palette
from l2l_fast.models.presets import FASHION_MNIST_PALETTE
from l2l_fast.ops import reference
from l2l_fast.training.pretrain import pretrain
from l2l_fast.unlearning import objectives
from l2l_fast.unlearning.objectives import StepModels
from l2l_fast.unlearning.recipe import frozen_teacher
from l2l_fast.unlearning.step_data import StepInputs

from conftest import PALETTE_TINY as TINY, assert_low_precision_close_to_fp32, images, palette_model as tiny_model


def corruption(adapter, spec: str, batch: int, seed: int = 0):
    return adapter.draw(parse_mask(spec), batch, torch.Generator().manual_seed(seed))


def test_a_generation_split_into_batches_completes_each_image_as_the_whole_run_does():
    adapter = DiffusionAdapter(tiny_model(), sample_method="ddim", sample_steps=3)
    x = images(7, seed=1)
    whole = generate(adapter, x, "random:0.5", seed=3, batch_size=2)
    assert torch.equal(generate(adapter, x, "random:0.5", seed=3, batch_size=2, batches=[3, 1]),
                       torch.cat([whole[2:4], whole[6:]]))
    # each batch's draw also takes γ and noise, so the masks must be drawn batch by batch as generate does
    visible = visible_pixels(adapter, 7, "random:0.5", seed=3, batch_size=2)
    assert not torch.equal(visible, visible_pixels(adapter, 7, "random:0.5", seed=3, batch_size=7))
    assert torch.equal(whole * visible, x * visible) and not torch.equal(whole, x)
    with pytest.raises(ValueError, match="batches must name at least one of the 4 batches"):
        generate(adapter, x, "random:0.5", batch_size=2, batches=[4])


def test_encoder_returns_every_input_block_and_the_middle_block():
    model = tiny_model()
    x, gammas = torch.randn(3, 2, 16, 16), torch.rand(3)
    maps, emb = model.encoder(x, gammas)
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 16, 16), (8, 16, 16), (8, 8, 8), (16, 8, 8), (16, 8, 8)]
    assert len(maps) == len(model.encoder.input_blocks) + 1 and emb.shape == (3, 32)
    assert torch.equal(model.decoder(maps, emb), model(x, gammas))


def test_preset_layout_at_28x28():
    model = PaletteUNet(**FASHION_MNIST_PALETTE).eval()
    adapter = DiffusionAdapter(model)
    assert adapter.image_shape == (1, 28, 28) and adapter.grid == (7, 7) and adapter.patch_size == 4
    with torch.no_grad():
        maps = adapter.encode(model.encoder, torch.rand(1, 1, 28, 28), corruption(adapter, "inpaint:3", 1))
    assert [m.shape[-1] for m in maps] == [28, 28, 28, 14, 14, 14, 7, 7, 7, 7]


def test_gammas_fall_between_consecutive_alpha_bars():
    model = tiny_model()
    gammas = model.draw_gammas(64, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(1, 20, (64,), generator=g)
    u = torch.rand(64, generator=g)
    table = torch.cumprod(1 - torch.linspace(1e-4, 0.2, 20, dtype=torch.float64), 0).float()
    torch.testing.assert_close(gammas, table[t - 1] + u * (table[t] - table[t - 1]))
    assert bool(((gammas <= table[t - 1]) & (gammas >= table[t])).all())


def test_unet_input_is_palettes_by_hand():
    model = tiny_model()
    adapter = DiffusionAdapter(model)
    x = images(2, 1)
    c = corruption(adapter, "inpaint:3", 2)
    keep = c.pixel
    y0 = 2 * x - 1
    g = c.gamma.view(-1, 1, 1, 1)
    y_cond = keep * y0 + (1 - keep) * c.cond_noise
    y_t = keep * y0 + (1 - keep) * (g.sqrt() * y0 + (1 - g).sqrt() * c.noise)
    torch.testing.assert_close(adapter.unet_input(x, c), torch.cat([y_cond, y_t], dim=1))
    assert keep.shape == (2, 1, 16, 16) and keep[:, :, 4:10, 4:10].sum() == 0 and keep.sum() == 2 * (256 - 36)


def test_task_loss_is_noise_mse_inside_the_hole():
    model = tiny_model()
    adapter = DiffusionAdapter(model)
    x = images(3, 2)
    c = corruption(adapter, "outpaint:4", 3)
    with torch.no_grad():
        predicted = model(adapter.unet_input(x, c), c.gamma)
        hole = (c.pixel == 0).expand_as(x)
        expected = (predicted - c.noise)[hole].square().mean()
        torch.testing.assert_close(adapter.task_loss(x, c), expected)
        targets = torch.rand_like(x)
        mixed = torch.where(hole, targets, x)
        torch.testing.assert_close(adapter.task_loss(x, c, targets), adapter.task_loss(mixed, c))


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
@pytest.mark.parametrize("spec", ["inpaint:3", "outpaint:3"])
def test_sampling_is_batched_seeded_and_keeps_the_known_region(method, spec):
    model = tiny_model()
    x = images(3, 4)
    c = corruption(adapter := DiffusionAdapter(model, sample_method=method, sample_steps=4, seed=5), spec, 3)
    known = c.pixel.bool().expand_as(x)
    noisy_inputs = []
    model.encoder.register_forward_pre_hook(lambda module, args: noisy_inputs.append(args[0][:, 1:]))
    out = adapter.generate(x, c)
    assert len(noisy_inputs) == (10 if method == "ddpm" else 4)
    assert all(y_t.shape[0] == 3 and torch.equal(y_t[known], 2 * x[known] - 1) for y_t in noisy_inputs)
    assert torch.equal(out[known], x[known])
    assert not torch.allclose(out[~known], x[~known]) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(adapter.generate(x, c), out)
    other = DiffusionAdapter(model, sample_method=method, sample_steps=4, seed=6).generate(x, c)
    assert not torch.equal(other, out)


def test_model_sampling_pastes_the_known_region_exactly():
    model = tiny_model()
    y_0 = torch.rand(2, 1, 16, 16) * 2 - 1
    keep = torch.rand(2, 1, 16, 16) > 0.5
    y_cond = model.condition(y_0, keep, torch.randn_like(y_0))
    out = model.sample(y_cond, y_0, keep, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[keep.expand_as(y_0)], y_0[keep.expand_as(y_0)])


def test_ddim_steps_are_checked():
    model = tiny_model()
    y = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="steps"):
        model.sample(y, y, torch.ones_like(y), method="ddim", steps=11)
    with pytest.raises(ValueError, match="ddpm runs all 10 steps"):
        model.sample(y, y, torch.ones_like(y), method="ddpm", steps=4)


class RecordingAdapter(DiffusionAdapter):
    """Records the UNet input of every encode call: (is_teacher, input)."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def encode(self, encoder, images, corruption):
        self.calls.append((encoder is not self.encoder, self.unet_input(images, corruption)))
        return super().encode(encoder, images, corruption)


def test_teacher_forget_input_differs_from_the_students_only_inside_the_hole():
    model = tiny_model()
    adapter = RecordingAdapter(model)
    batch = 2
    l2l_fast.unlearn(model, images(4, 1, 0.3), images(4, 2), adapter=adapter, steps=1, batch_size=batch,
                     mask="inpaint:2", progress=False)
    (student_is_teacher, student), (teacher_is_teacher, teacher) = adapter.calls
    assert (student_is_teacher, teacher_is_teacher) == (False, True)
    assert torch.equal(teacher[:batch], student[:batch])
    keep = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    keep[..., 6:10, 6:10] = False
    differs = teacher[batch:] != student[batch:]
    assert not differs[keep.expand(batch, 2, -1, -1)].any()
    assert not differs[:, :1].any()  # the condition image holds noise in the hole for both
    assert differs[:, 1:][~keep.expand(batch, 1, -1, -1)].float().mean() > 0.99


def state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


RUN = dict(steps=3, batch_size=2, mask="inpaint:1", progress=False)
FORGET, RETAIN = images(6, 1, 0.3), images(6, 2)


def test_unlearn_trains_the_encoder_only_and_is_seeded():
    model = tiny_model()
    decoder, encoder = state(model.decoder), state(model.encoder)
    l2l_fast.unlearn(model, FORGET, RETAIN, **RUN)
    assert all(torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(encoder[k], v)]
    assert "input_blocks.0.0.weight" in changed and "middle_block.1.qkv.weight" in changed
    again = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **RUN)
    assert all(torch.equal(v, again.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())


@pytest.mark.parametrize("method", ["max_loss", "noisy_label", "retain_label", "random_encoder"])
def test_baselines_train_what_they_should(method):
    """Every baseline runs on the UNet with finite step values; the whole-model ones also
    move the output blocks, random_encoder keeps them bit-identical."""
    model = tiny_model()
    decoder, encoder = state(model.decoder), state(model.encoder)
    log = []
    l2l_fast.unlearn(model, FORGET, RETAIN, method=method, callback=log.append, **{**RUN, "steps": 2})
    assert [r["step"] for r in log] == [0, 1] and all(math.isfinite(r["loss"]) for r in log)
    assert any(not torch.equal(encoder[k], v) for k, v in model.encoder.state_dict().items())
    decoder_same = all(torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())
    assert decoder_same == (method == "random_encoder")


# The objectives on one fixed batch, against DESIGN §1 written out in plain PyTorch:
# Palette's input and loss by hand, the noise from the reference stream z alone.

ALPHA = 0.25


def palette_input(x: torch.Tensor, c, pure_noise: torch.Tensor | None = None) -> torch.Tensor:
    """cat(y_cond, y_t) for [0, 1] images: y_0 = 2x − 1 where known; in the hole ε_cond, and
    √γ·y_0 + √(1−γ)·ε (rows in `pure_noise`: ε alone)."""
    keep, y_0, g = c.pixel.bool(), 2 * x - 1, c.gamma.view(-1, 1, 1, 1)
    noisy = g.sqrt() * y_0 + (1 - g).sqrt() * c.noise
    if pure_noise is not None:
        noisy = torch.where(pure_noise.view(-1, 1, 1, 1), c.noise, noisy)
    return torch.cat([torch.where(keep, y_0, c.cond_noise), torch.where(keep, y_0, noisy)], dim=1)


def hole_mse(predicted: torch.Tensor, c) -> torch.Tensor:
    hole = (c.pixel == 0).expand_as(predicted)
    return (predicted - c.noise)[hole].square().mean()


def task_loss(model, x, c) -> torch.Tensor:
    return hole_mse(model(palette_input(x, c), c.gamma), c)


def noise_like(x: torch.Tensor, clamp=None) -> torch.Tensor:
    """μ + σ·z, μ and unbiased σ over the whole batch, z the seeded stream (seed 9, offset 0)."""
    z = reference.gaussian_target(x, seed=9, offset=0, stats="standard")
    n = x.mean() + x.std() * z
    return n if clamp is None else n.clamp(*clamp)


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    diff = (a - b).flatten(1)
    return diff.square().mean(1) if kind == "mse" else diff.norm(dim=1)


def mapped_terms(student_maps, target_maps, num_retain: int, kind: str):
    per_sample = sum(distance(a, b, kind) for a, b in zip(student_maps, target_maps))
    retain, forget = per_sample[:num_retain].mean(), per_sample[num_retain:].mean()
    return retain + ALPHA * forget, retain, forget


def by_hand(method: str, model, teacher, original, s):
    """(loss, retain term, forget term) of `method` from the definitions."""
    c, x, R = s.corruption, torch.cat([s.retain, s.forget]), s.num_retain
    c_retain, c_forget = c[:R], c[R:]
    if method in ("ours", "random_encoder"):
        student, _ = model.encoder(palette_input(x, c), c.gamma)
        with torch.no_grad():
            if method == "ours":  # forget rows: the teacher on y_t whose hole is ε alone
                target, _ = teacher(palette_input(x, c, torch.arange(len(x)) >= R), c.gamma)
            else:  # forget rows: Gaussian maps with the batch statistics of the teacher's
                target, _ = teacher(palette_input(x, c), c.gamma)
                target = [torch.cat([t[:R], noise_like(t[R:])]) for t in target]
        return mapped_terms(student, target, R, s.distance)
    retain = task_loss(model, s.retain, c_retain)
    if method == "max_loss":
        forget = task_loss(model, s.forget, c_forget)
        return retain - ALPHA * forget, retain, forget
    if method == "noisy_label":
        targets = noise_like(s.forget, s.noise_clamp)
    else:  # retain_label: the original model's generations for the first retain rows, their corruption
        targets = DiffusionAdapter(original).generate(s.retain[:s.forget.shape[0]], c[:s.forget.shape[0]])
    forget = task_loss(model, torch.where(c_forget.pixel.bool(), s.forget, targets), c_forget)
    return retain + ALPHA * forget, retain, forget


@pytest.mark.parametrize("method, kind", [("ours", "l2"), ("random_encoder", "mse"), ("max_loss", "mse"),
                                          ("noisy_label", "mse"), ("retain_label", "mse")])
def test_each_objective_is_its_definition_on_a_fixed_batch(method, kind):
    model = tiny_model()
    original = copy.deepcopy(model).eval().requires_grad_(False)
    teacher = frozen_teacher(model.encoder)
    with torch.no_grad():  # a student away from its teacher
        for p in model.encoder.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    adapter = DiffusionAdapter(model)
    s = StepInputs(adapter=adapter, retain=images(3, 1), forget=images(2, 2, 0.3),
                   corruption=adapter.draw(parse_mask("inpaint:2"), 5, torch.Generator().manual_seed(3)),
                   alpha=ALPHA, distance=kind, noise_seed=9, noise_offset=0, noise_stats="batch",
                   noise_clamp=(0.0, 1.0))
    objective = objectives.OBJECTIVES[method]
    reference_of = {"teacher": teacher, "original": DiffusionAdapter(original), None: None}
    ours = objective.loss(s, StepModels(model.encoder if objective.encoder_only else model,
                                        reference_of[objective.reference]))
    theirs = by_hand(method, model, teacher, original, s)
    # measured: the terms (0.27 to 43) agree to 1.1e-7 relative; 100x margin
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0)
    params = [p for p in (model.encoder if objective.encoder_only else model).parameters()]
    # the gradients sum in another order (and with the thread count, another chunking): elements near 0
    # are held to the parameter's gradient scale rather than to their own
    for a, b in zip(torch.autograd.grad(ours[0], params), torch.autograd.grad(theirs[0], params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


def test_checkpoint_roundtrip(tmp_path):
    model = tiny_model()
    loaded = load_model(save_model(model, tmp_path / "p.safetensors")).eval()
    x, gammas = torch.randn(2, 2, 16, 16), torch.rand(2)
    assert loaded.config == model.config and torch.equal(loaded(x, gammas), model(x, gammas))


def test_pretrain_minimises_palettes_noise_mse_on_its_batches():
    """Each step: 4 images drawn with the run's generator, then a corruption of the step's
    mask; the loss is the ε-prediction MSE over the hole of the UNet's prediction."""
    model = tiny_model()
    initial = copy.deepcopy(model)
    x = images(8, 3)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append((args[0].detach(), args[1], out.detach())))
    losses = pretrain(DiffusionAdapter(model), x, steps=2, batch_size=4, progress=False,
                      masks=("random:0.75", "inpaint:3"))
    g = torch.Generator().manual_seed(0)
    for step, spec in enumerate(["random:0.75", "inpaint:3"]):
        index = torch.randint(8, (4,), generator=g)
        c = DiffusionAdapter(initial).draw(parse_mask(spec), 4, g)
        unet_input, gammas, predicted = seen[step]
        torch.testing.assert_close(unet_input, palette_input(x[index], c), rtol=0, atol=0)
        assert torch.equal(gammas, c.gamma)
        # measured: equal to the last bit (the same float32 ops on the captured prediction)
        assert losses[step] == pytest.approx(hole_mse(predicted, c).item(), rel=1e-6)
    torch.testing.assert_close(seen[0][2], initial(seen[0][0], seen[0][1]))


def test_attention_uses_the_legacy_head_layout():
    torch.manual_seed(0)
    block = AttentionBlock(8, num_head_channels=4, groups=4)
    torch.nn.init.normal_(block.proj_out.weight)
    x = torch.randn(2, 8, 3, 3)
    qkv = block.qkv(block.norm(x.reshape(2, 8, 9))).reshape(2 * 2, 12, 9)
    q, k, v = qkv.split(4, dim=1)
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / 2.0, dim=-1)
    h = torch.einsum("bts,bcs->bct", weight, v).reshape(2, 8, 9)
    torch.testing.assert_close(block(x), (x.reshape(2, 8, 9) + block.proj_out(h)).reshape(2, 8, 3, 3))


OFFICIAL_KEYS = {
    "denoise_fn.cond_embed.0.weight": [32, 8], "denoise_fn.cond_embed.2.bias": [32],
    "denoise_fn.input_blocks.0.0.weight": [8, 2, 3, 3],
    "denoise_fn.input_blocks.1.0.emb_layers.1.weight": [16, 32],
    "denoise_fn.input_blocks.2.0.in_layers.2.weight": [8, 8, 3, 3],
    "denoise_fn.input_blocks.3.0.skip_connection.weight": [16, 8, 1, 1],
    "denoise_fn.input_blocks.3.1.qkv.weight": [48, 16, 1],
    "denoise_fn.middle_block.1.proj_out.weight": [16, 16, 1],
    "denoise_fn.middle_block.2.out_layers.3.weight": [16, 16, 3, 3],
    "denoise_fn.output_blocks.0.0.in_layers.0.weight": [32],
    "denoise_fn.output_blocks.1.2.in_layers.2.weight": [16, 16, 3, 3],
    "denoise_fn.output_blocks.3.0.skip_connection.weight": [8, 16, 1, 1],
    "denoise_fn.out.0.weight": [8], "denoise_fn.out.2.weight": [1, 8, 3, 3],
}


def official_state(seed: int = 1) -> dict:
    """A state dict as Palette's `Network` saves it for the TINY `unet` config."""
    torch.manual_seed(seed)
    state = {f"denoise_fn.{k.split('.', 1)[1]}": torch.randn_like(v) for k, v in tiny_model().state_dict().items()}
    gammas = torch.rand(10)
    state.update(gammas=gammas, sqrt_recip_gammas=gammas, sqrt_recipm1_gammas=gammas,
                 posterior_log_variance_clipped=gammas, posterior_mean_coef1=gammas, posterior_mean_coef2=gammas)
    return state


def test_official_checkpoint_loads(tmp_path):
    state = official_state()
    assert {k: list(state[k].shape) for k in OFFICIAL_KEYS} == OFFICIAL_KEYS
    torch.save(state, tmp_path / "100_Network.pth")
    model = load_official_palette(PaletteUNet(**TINY), tmp_path / "100_Network.pth")
    assert torch.equal(model.encoder.input_blocks[3][1].qkv.weight, state["denoise_fn.input_blocks.3.1.qkv.weight"])
    assert torch.equal(model.decoder.out[2].weight, state["denoise_fn.out.2.weight"])
    bare = {k.removeprefix("denoise_fn."): v for k, v in state.items()}
    again = load_official_palette(PaletteUNet(**TINY), bare)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_official_checkpoint_mismatch_lists_keys_and_shapes():
    state = official_state()
    del state["denoise_fn.out.2.bias"]
    state["denoise_fn.input_blocks.0.0.weight"] = torch.zeros(8, 6, 3, 3)
    state["denoise_fn.noise_level_mlp.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        load_official_palette(PaletteUNet(**TINY), state)
    message = str(info.value)
    assert "missing keys: decoder.out.2.bias" in message
    assert "unexpected keys: denoise_fn.noise_level_mlp.0.weight" in message
    assert "encoder.input_blocks.0.0.weight: checkpoint [8, 6, 3, 3] vs model [8, 2, 3, 3]" in message


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channel=3), "in_channel"),
    (dict(image_size=18, channel_mults=(1, 2, 2)), "multiple of 4"),
    (dict(norm_groups=3), "norm_groups"),
    (dict(beta_schedule={"train": {"schedule": "sigmoid"}}), "beta schedule"),
])
def test_bad_configs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PaletteUNet(**{**TINY, **kwargs})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_runs_close_to_fp32(precision):
    assert_low_precision_close_to_fp32(tiny_model, FORGET, RETAIN, RUN, precision)


def test_a_56_pixel_image_takes_the_7_by_7_grid_as_in_the_diffusers_adapter():
    """masks.default_patch_size, shared with adapt_diffusers (test_diffusers.py): 8-px patches
    on a 7 x 7 grid, so "inpaint:3" hides the centre 24 x 24 pixels (3/7 of the side, as at 28 px)."""
    adapter = DiffusionAdapter(PaletteUNet(**{**TINY, "image_size": 56}))
    assert adapter.patch_size == 8 and adapter.grid == (7, 7)
    hole = adapter.pixel_keep(corruption(adapter, "inpaint:3", 1))[0, 0] == 0
    rows, cols = hole.nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 39, 16, 39) and hole.sum() == 24 * 24

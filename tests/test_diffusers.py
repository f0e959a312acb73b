"""diffusers inpainters: a tiny Stable Diffusion inpainting pipeline and a tiny Palette-style
UNet2DModel, built from configs offline. References are diffusers' own UNet forward (its
encoder half read with forward hooks) and its schedulers' add_noise."""
import copy

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import l2l_fast  # noqa: E402
from l2l_fast.models.masks import parse_mask  # noqa: E402
from l2l_fast.unlearning.objectives import StepModels, ours  # noqa: E402
from l2l_fast.unlearning.recipe import UnlearnRecipe, frozen_teacher  # noqa: E402
from l2l_fast.unlearning.config import UnlearnConfig  # noqa: E402

RUN = dict(steps=2, batch_size=2, lr=1e-2, mask="inpaint:4", progress=False)
ENCODER_PREFIXES = ("conv_in.", "time_proj.", "time_embedding.", "down_blocks.", "mid_block.")


def sd_images(n, seed):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def pixel_images(n, seed):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def pipe(tmp_path, tiny_inpaint_pipeline):
    return tiny_inpaint_pipeline(tmp_path / "tokenizer")


def sd_adapter(pipe, **options):
    return l2l_fast.adapt_diffusers(pipe, prompt="a cat", guidance_scale=1.0, num_inference_steps=2, **options)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def encoder_maps(unet, *args):
    """The encoder half's outputs as diffusers' UNet forward computes them (hooks)."""
    maps, hooks = [], [unet.conv_in.register_forward_hook(lambda m, i, o: maps.append(o))]
    for block in unet.down_blocks:
        hooks.append(block.register_forward_hook(lambda m, i, o: maps.extend(o[1])))
    hooks.append(unet.mid_block.register_forward_hook(lambda m, i, o: maps.append(o)))
    try:
        with torch.no_grad():
            unet(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def weighted_distance(student, teacher, num_retain, alpha):
    per_sample = sum((s.float() - t.float()).square().flatten(1).mean(1) for s, t in zip(student, teacher))
    num_forget = per_sample.shape[0] - num_retain
    return per_sample[:num_retain].sum() / num_retain + alpha * per_sample[num_retain:].sum() / num_forget


def test_stable_diffusion_only_the_encoder_half_moves(pipe):
    adapter = sd_adapter(pipe)
    before = {name: snapshot(getattr(pipe, name)) for name in ("unet", "vae", "text_encoder")}
    out = l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), adapter=adapter, **RUN)
    assert out is pipe
    for name in ("vae", "text_encoder"):
        after = getattr(pipe, name).state_dict()
        assert all(torch.equal(before[name][k], after[k]) for k in after), name
    unet = pipe.unet.state_dict()
    moved = {k for k in unet if not torch.equal(before["unet"][k], unet[k])}
    assert moved and all(k.startswith(ENCODER_PREFIXES) for k in moved)
    assert not any(k.startswith(("up_blocks.", "conv_out.", "conv_norm_out.")) for k in moved)
    assert any(k.startswith("down_blocks.") for k in moved) and any(k.startswith("mid_block.") for k in moved)


def test_stable_diffusion_same_seed_same_bits(tmp_path, tiny_inpaint_pipeline):
    results = []
    for run in range(2):
        pipe = tiny_inpaint_pipeline(tmp_path / f"tok{run}")
        l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), adapter=sd_adapter(pipe), seed=3, **RUN)
        results.append(pipe.unet.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_stable_diffusion_vae_and_text_encoder_run_once(pipe):
    text_calls = []
    pipe.text_encoder.register_forward_hook(lambda m, i, o: text_calls.append(1))
    adapter = sd_adapter(pipe)
    assert len(text_calls) == 1
    rows = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *a, **k: rows.append(x.shape[0]) or encode(x, *a, **k)
    steps, size = 3, 4
    l2l_fast.unlearn(pipe, sd_images(size, 1), sd_images(size, 2), adapter=adapter,
                     **{**RUN, "steps": steps, "batch_size": size})
    # each real image's latents once in the run; the masked images once per step (student and teacher share them)
    assert sum(rows) == 2 * size + steps * 2 * size
    assert len(text_calls) == 1


def test_stable_diffusion_step_loss_is_the_formula(pipe):
    adapter = sd_adapter(pipe)
    config = UnlearnConfig(**{**RUN, "batch_size": 3, "alpha": 0.4})
    recipe = UnlearnRecipe(pipe.unet, sd_images(5, 1), sd_images(5, 2), config, adapter=adapter)
    recipe.setup()
    try:
        teacher_unet = copy.deepcopy(pipe.unet)
        teacher = frozen_teacher(adapter.encoder)
        with torch.no_grad():  # a student that differs from the teacher, so both terms are non-zero
            for p in adapter.encoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
        inputs = recipe.inputs(0)
        loss, retain_term, forget_term = ours(inputs, StepModels(student=adapter.encoder, reference=teacher))
    finally:
        recipe.close()

    c = inputs.corruption
    x = torch.cat([inputs.retain, inputs.forget])
    vae, scale = pipe.vae, pipe.vae.config.scaling_factor
    keep = c.pixel
    with torch.no_grad():
        z0 = vae.encode(2 * x - 1).latent_dist.mean * scale
        masked = vae.encode((2 * x - 1) * (keep > 0.5)).latent_dist.mean * scale
    mask = torch.nn.functional.interpolate(1 - keep, size=z0.shape[-2:])
    z_t = pipe.scheduler.add_noise(z0, c.noise, c.timesteps)
    states = pipe.encode_prompt("a cat", "cpu", 1, False)[0].expand(x.shape[0], -1, -1)
    student = encoder_maps(pipe.unet, torch.cat([z_t, mask, masked], 1), c.timesteps, states)
    forget = torch.arange(x.shape[0]) >= 3
    teacher_z = torch.where(forget.reshape(-1, 1, 1, 1) & (mask > 0.5), c.noise, z_t)
    target = encoder_maps(teacher_unet, torch.cat([teacher_z, mask, masked], 1), c.timesteps, states)
    expected = weighted_distance(student, target, 3, 0.4)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-7)
    assert retain_term > 0 and forget_term > 0


def test_stable_diffusion_generation_keeps_the_visible_region(pipe):
    adapter = sd_adapter(pipe)
    images = sd_images(2, 5)
    corruption = adapter.draw(parse_mask("inpaint:4"), 2, torch.Generator().manual_seed(0))
    out = adapter.generate(images, corruption)
    keep = corruption.pixel.bool().expand_as(images)
    assert torch.equal(out[keep], images[keep])
    # the hole is the pipeline's own sampling, seeded by the adapter's seed
    reference = pipe(prompt=["a cat"] * 2, image=images, mask_image=1 - corruption.pixel, height=16, width=16,
                     num_inference_steps=2, guidance_scale=1.0, output_type="pt",
                     generator=torch.Generator().manual_seed(0)).images
    torch.testing.assert_close(out[~keep], reference[~keep])
    assert not torch.allclose(out[~keep], images[~keep])


def test_stable_diffusion_guidance_encodes_the_negative_prompt(pipe):
    adapter = l2l_fast.adapt_diffusers(pipe, prompt="a cat", negative_prompt="a dog", guidance_scale=3.0)
    reference = pipe.encode_prompt("a cat", "cpu", 1, True, negative_prompt="a dog")
    assert torch.equal(adapter.prompt_embeds, reference[0])
    assert torch.equal(adapter.negative_prompt_embeds, reference[1])


def test_stable_diffusion_errors(tmp_path, pipe, tiny_inpaint_pipeline):
    with pytest.raises(ValueError, match="prompt"):
        l2l_fast.adapt_diffusers(pipe)
    with pytest.raises(ValueError, match="prompt"):
        l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), **RUN)
    with pytest.raises(ValueError, match="prompt_embeds"):
        l2l_fast.adapt_diffusers(pipe, prompt_embeds=torch.zeros(1, 8, 5), guidance_scale=1.0)
    adapter = sd_adapter(pipe)
    with pytest.raises(ValueError, match="mask 'inpaint:9'"):
        l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), adapter=adapter, **{**RUN, "mask": "inpaint:9"})
    other = adapter.draw(parse_mask("inpaint:2"), 2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="corruption"):
        adapter.generate(torch.rand(2, 3, 16, 16), other[:1])
    with pytest.raises(ValueError, match="images have shape"):
        adapter.generate(torch.rand(2, 3, 8, 8), other)
    text_to_image = tiny_inpaint_pipeline(tmp_path / "tok4")
    from diffusers import UNet2DConditionModel
    config = dict(text_to_image.unet.config)
    config["in_channels"] = 4
    text_to_image.unet = UNet2DConditionModel.from_config(config)
    with pytest.raises(ValueError, match="not an inpainting pipeline"):
        l2l_fast.adapt_diffusers(text_to_image, prompt="a cat")
    with pytest.raises(TypeError, match="through its pipeline"):
        l2l_fast.adapt_diffusers(pipe.unet)


def test_stable_diffusion_activation_checkpointing_same_result(tmp_path, tiny_inpaint_pipeline):
    results = []
    for run, checkpoint in enumerate((False, True)):
        pipe = tiny_inpaint_pipeline(tmp_path / f"tok{run}")
        l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), adapter=sd_adapter(pipe),
                         checkpoint_activations=checkpoint, **RUN)
        results.append(pipe.unet.state_dict())
        assert all(type(b).__name__ != "CheckpointWrapper" for b in pipe.unet.down_blocks)
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-5, atol=1e-6)


def test_palette_unet_only_the_encoder_half_moves_and_same_bits(palette_unet):
    results = []
    for _ in range(2):
        unet = palette_unet()
        before = snapshot(unet)
        l2l_fast.unlearn(unet, pixel_images(4, 1), pixel_images(4, 2), seed=1, **RUN)
        after = unet.state_dict()
        moved = {k for k in after if not torch.equal(before[k], after[k])}
        assert moved and all(k.startswith(ENCODER_PREFIXES) for k in moved)
        results.append(after)
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_palette_unet_step_loss_is_the_formula(palette_unet):
    unet = palette_unet()
    adapter = l2l_fast.adapt_diffusers(unet)
    config = UnlearnConfig(**{**RUN, "batch_size": 3})
    recipe = UnlearnRecipe(unet, pixel_images(5, 1), pixel_images(5, 2), config, adapter=adapter)
    recipe.setup()
    try:
        original = copy.deepcopy(unet)
        teacher = frozen_teacher(adapter.encoder)
        with torch.no_grad():
            for p in adapter.encoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
        inputs = recipe.inputs(0)
        loss, _, _ = ours(inputs, StepModels(student=adapter.encoder, reference=teacher))
    finally:
        recipe.close()
    c = inputs.corruption
    y_0 = 2 * torch.cat([inputs.retain, inputs.forget]) - 1
    keep = c.pixel
    y_cond = keep * y_0 + (1 - keep) * c.cond_noise
    y_t = keep * y_0 + (1 - keep) * adapter.scheduler.add_noise(y_0, c.noise, c.timesteps)
    forget_t = keep * y_0 + (1 - keep) * c.noise  # the authors' target: the hole is pure noise
    forget = (torch.arange(6) >= 3).reshape(-1, 1, 1, 1)
    student = encoder_maps(unet, torch.cat([y_cond, y_t], 1), c.timesteps)
    target = encoder_maps(original, torch.cat([y_cond, torch.where(forget, forget_t, y_t)], 1), c.timesteps)
    torch.testing.assert_close(loss.detach(), weighted_distance(student, target, 3, 0.25), rtol=1e-4, atol=1e-7)


def test_palette_unet_generation_keeps_the_visible_region_and_errors(palette_unet):
    unet = palette_unet()
    adapter = l2l_fast.adapt_diffusers(unet, num_inference_steps=3)
    images = pixel_images(2, 4)
    corruption = adapter.draw(parse_mask("outpaint:4"), 2, torch.Generator().manual_seed(0))
    out = adapter.generate(images, corruption)
    keep = corruption.pixel.bool().expand_as(images)
    assert torch.equal(out[keep], images[keep])
    assert torch.equal(out, adapter.generate(images, corruption))
    assert not torch.allclose(out[~keep], images[~keep])
    from diffusers import UNet2DModel
    with pytest.raises(ValueError, match="in_channels = 2 x out_channels"):
        l2l_fast.adapt_diffusers(UNet2DModel(sample_size=16, in_channels=1, out_channels=1,
                                             block_out_channels=(8, 8), norm_num_groups=4,
                                             down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2))
    with pytest.raises(ValueError, match="mask 'outpaint:9'"):
        l2l_fast.unlearn(unet, pixel_images(4, 1), pixel_images(4, 2), **{**RUN, "mask": "outpaint:9"})


def test_palette_unet_task_loss_is_epsilon_mse_in_the_hole(palette_unet):
    unet = palette_unet()
    adapter = l2l_fast.adapt_diffusers(unet)
    images = pixel_images(3, 6)
    c = adapter.draw(parse_mask("inpaint:4"), 3, torch.Generator().manual_seed(2))
    y_0, keep = 2 * images - 1, c.pixel
    y_t = keep * y_0 + (1 - keep) * adapter.scheduler.add_noise(y_0, c.noise, c.timesteps)
    with torch.no_grad():
        predicted = unet(torch.cat([keep * y_0 + (1 - keep) * c.cond_noise, y_t], 1), c.timesteps).sample
        hole = (keep == 0).expand_as(predicted)
        expected = (predicted - c.noise)[hole].square().mean()
        torch.testing.assert_close(adapter.task_loss(images, c), expected)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_stable_diffusion_low_precision_step_close_to_fp32(tmp_path, precision, tiny_inpaint_pipeline):
    """The teacher cast to the step's precision, the student under autocast: the first step's
    loss is the fp32 one up to the precision's rounding, and the frozen parts stay bit-identical."""
    losses = {}
    for run, chosen in enumerate(("fp32", precision)):
        pipe = tiny_inpaint_pipeline(tmp_path / f"tok{run}")
        vae = snapshot(pipe.vae)
        records = []
        l2l_fast.unlearn(pipe, sd_images(4, 1), sd_images(4, 2), adapter=sd_adapter(pipe), precision=chosen,
                         callback=records.append, **{**RUN, "steps": 1})
        losses[chosen] = records[0]["loss"]
        assert all(torch.equal(vae[k], v) for k, v in pipe.vae.state_dict().items())
    assert losses[precision] == pytest.approx(losses["fp32"], rel=0.1, abs=1e-4)


def test_a_56_pixel_image_takes_the_7_by_7_grid_as_in_the_diffusion_adapter(tmp_path, palette_unet,
                                                                            tiny_inpaint_pipeline):
    """masks.default_patch_size, shared with DiffusionAdapter (test_diffusion.py): 56 px is
    7 patches of 8 for a Palette-style UNet2DModel and for Stable Diffusion (whole latent cells)."""
    pixel = l2l_fast.adapt_diffusers(palette_unet(image_size=56))
    assert pixel.patch_size == 8 and pixel.grid == (7, 7)
    keep = pixel.pixel_keep(pixel.draw(parse_mask("inpaint:3"), 1, torch.Generator().manual_seed(0)))
    assert keep.shape == (1, 1, 56, 56) and (keep == 0).sum() == 24 * 24
    sd = sd_adapter(tiny_inpaint_pipeline(tmp_path / "tok", latent_size=28))
    assert sd.image_shape == (3, 56, 56) and sd.patch_size == 8 and sd.grid == (7, 7)


@pytest.mark.slow
def test_the_diffusers_demo_keeps_its_trained_unet_per_training_length(tmp_path):
    """examples/diffusers_demo.py end to end at toy size: the UNet trained for --pretrain-steps is written
    under a name with that count and read back by the next run, which then starts from the same
    completions; another count trains its own."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "diffusers_demo.py"
    spec = importlib.util.spec_from_file_location("diffusers_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    small = ["--out", str(tmp_path), "--steps", "2", "--batch-size", "4", "--sample-steps", "2",
             "--eval-per-class", "1"]
    first = demo.main([*small, "--pretrain-steps", "3"])
    assert (tmp_path / "unet_3steps.safetensors").is_file() and first["grid"].is_file()
    again = demo.main([*small, "--pretrain-steps", "3"])
    assert again["before"] == first["before"] and again["after"] == first["after"]
    other = demo.main([*small, "--pretrain-steps", "4"])
    assert (tmp_path / "unet_4steps.safetensors").is_file() and other["before"] != first["before"]

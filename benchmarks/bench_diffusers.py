"""The unlearning step on diffusers inpainters: the lean step as `unlearn` runs it
(first epoch: each step's real images through the VAE once, shared by student and
teacher; later epochs: image latents cached, only the masked images encoded) against
the same step written naively (VAE in every pass, the teacher run twice, on the real
batch and on a full forget-target batch, in fp32, the loss read on the host).

    cd benchmarks
    OMP_NUM_THREADS=1 pytest bench_diffusers.py --benchmark-json results/diffusers/cpu_diffusers_1thread.json
    L2L_FAST_BENCH_PAPER_SIZES=1 pytest bench_diffusers.py -k sd15 --benchmark-json results/diffusers/sd15_flops_meta.json

CPU: a small Stable Diffusion inpainting pipeline (32 x 32 images, 16 x 16 latents) and a
small Palette-style UNet2DModel (3 x 32 x 32), batch 4 + 4, fp32. With
L2L_FAST_BENCH_PAPER_SIZES=1 also the FLOPs of one step (forward and backward) at SD-1.5
inpainting size (860M-parameter UNet at 64 x 64 latents, 84M-parameter VAE at 512 x 512),
counted on the meta device (nothing is computed; fp32), batch 1 + 1 and 4 + 4.
"""
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from l2l_fast import UnlearnConfig, UnlearnRecipe, adapt_diffusers  # noqa: E402
from l2l_fast.adapters.diffusers import ForgetImages  # noqa: E402
from l2l_fast.models.masks import parse_mask  # noqa: E402
from l2l_fast.training.optim import BETAS, WEIGHT_DECAY, param_groups  # noqa: E402
from l2l_fast.unlearning.caches import SampleCache  # noqa: E402
from l2l_fast.unlearning.objectives import StepModels, ours  # noqa: E402
from l2l_fast.unlearning.recipe import frozen_teacher  # noqa: E402
from l2l_fast.unlearning.step_data import StepInputs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_diffusers import tiny_inpaint_pipeline  # noqa: E402

BATCH, LR, GRAD_CLIP, MASK = 4, 1e-4, 3.0, "inpaint:4"
PAPER_SIZES = os.environ.get("L2L_FAST_BENCH_PAPER_SIZES") == "1"


def small_sd(tmp):
    """A StableDiffusionInpaintPipeline with the SD-1.5 inpainting layout at small width: 16 x 16
    latents, 32 x 32 images; a CLIP tokenizer of single letters written to `tmp`."""
    pipe = tiny_inpaint_pipeline(tmp, latent_size=16, unet_channels=(32, 64), vae_channels=(16, 32), text_width=32)
    return adapt_diffusers(pipe, prompt="a photo", guidance_scale=1.0)


def small_palette(tmp):
    """A Palette-style UNet2DModel (condition and noisy image on channels), 3 x 32 x 32, attention at the bottom."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8)
    return adapt_diffusers(unet)


MODELS = {"sd_inpaint_small": small_sd, "palette_unet2d_small": small_palette}


def naive_loss(s: StepInputs, encoder, teacher):
    """The step's loss as naive code writes it: every pass prepares its own inputs (the VAE
    on the images and on the masked images each time), the teacher runs on the full real
    batch and again on the full batch as forget targets; clean per-subset means."""
    adapter = s.adapter
    images = torch.cat([s.retain, s.forget])

    def fresh():  # a copy of the corruption that shares nothing computed
        return s.corruption[:]

    student = adapter.encode(encoder, adapter.prepare(images), fresh())
    with torch.no_grad():
        real = adapter.encode(teacher, adapter.prepare(images), fresh())
        noise = adapter.encode(teacher, adapter.prepare(ForgetImages(images)), fresh())
    is_forget = torch.arange(images.shape[0], device=images.device) >= s.num_retain
    total = 0
    for st, r, n in zip(student, real, noise):
        target = torch.where(is_forget.reshape(-1, 1, 1, 1), n, r)
        total = total + (st.float() - target.float()).flatten(1).square().mean(1)
    num_forget = images.shape[0] - s.num_retain
    weights = torch.where(is_forget, s.alpha / num_forget, 1.0 / s.num_retain)
    return (total * weights).sum()


def build(name, recipe, tmp):
    adapter = MODELS[name](tmp)
    channels, size, _ = adapter.image_shape
    g = torch.Generator().manual_seed(0)
    forget, retain = (torch.rand(BATCH, channels, size, size, generator=g) for _ in range(2))
    config = UnlearnConfig(steps=1 << 30, batch_size=BATCH, lr=LR, mask=MASK, grad_clip=GRAD_CLIP, progress=False)
    run = UnlearnRecipe(adapter.model, forget, retain, config, adapter=adapter)
    run.setup()
    inputs = run.inputs(0)
    if recipe == "naive":
        encoder = adapter.encoder
        teacher = frozen_teacher(encoder)  # fp32 whatever the step's precision
        trainable = [p for p in encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(param_groups(encoder.named_parameters(), WEIGHT_DECAY), lr=LR, betas=BETAS)

        def step():
            loss = naive_loss(inputs, encoder, teacher)
            if not math.isfinite(loss.item()):
                raise FloatingPointError("loss is not finite")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, GRAD_CLIP)
            optimizer.step()
        return step, inputs, run
    if recipe == "lean":
        inputs.prepared = None  # the first epoch: each real image through the VAE in its step
    counter = iter(range(1 << 62))

    def step():
        inputs.corruption.memo = None  # as a fresh step's corruption: its masked images encoded again
        index = next(counter)
        run.train_step(run.monitor, index, LR, inputs)
        if run.monitor.due(index):
            run.monitor.read(lambda record: None)
    return step, inputs, run


@pytest.mark.parametrize("recipe", ["lean", "lean_cached", "naive"])
@pytest.mark.parametrize("name", list(MODELS))
def test_diffusers_step(benchmark, tmp_path, name, recipe):
    torch.manual_seed(0)
    benchmark.group = f"diffusers unlearning step fp32 {name} batch {BATCH}+{BATCH}"
    step, inputs, run = build(name, recipe, tmp_path)
    if recipe == "naive":  # the same loss as the lean step's on this batch
        teacher = frozen_teacher(run.adapter.encoder)
        lean, _, _ = ours(inputs, StepModels(student=run.adapter.encoder, reference=teacher))
        inputs.corruption.memo = None
        torch.testing.assert_close(naive_loss(inputs, run.adapter.encoder, teacher), lean, rtol=1e-4, atol=1e-6)
    step()  # warm-up; fills the latent cache of lean_cached
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(images=2 * BATCH, flops=counter.get_total_flops())
    run.close()


def sd15_inpaint_on_meta():
    """The SD-1.5 inpainting UNet and VAE (their published configs) on the meta device."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(sample_size=64, in_channels=9, out_channels=4, cross_attention_dim=768,
                                    attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=512)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    pipe = types.SimpleNamespace(unet=unet, vae=vae, scheduler=scheduler)
    return adapt_diffusers(pipe, prompt_embeds=torch.empty(1, 77, 768, device="meta"), guidance_scale=1.0)


@pytest.mark.skipif(not PAPER_SIZES, reason="set L2L_FAST_BENCH_PAPER_SIZES=1 for the SD-1.5 FLOP count")
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("recipe", ["lean", "lean_cached", "naive"])
def test_sd15_step_flops(benchmark, recipe, batch):
    from torch.utils.flop_counter import FlopCounterMode

    adapter = sd15_inpaint_on_meta()
    corruption = adapter.draw(parse_mask(MASK), 2 * batch, torch.Generator().manual_seed(0))
    images = torch.empty(batch, 3, 512, 512, device="meta")
    s = StepInputs(adapter=adapter, retain=images, forget=images.clone(), corruption=corruption, alpha=0.25,
                   distance="mse", noise_seed=0, noise_offset=0, noise_stats="batch", noise_clamp=None,
                   retain_index=torch.arange(batch), forget_index=torch.arange(batch))
    encoder = adapter.encoder
    teacher = frozen_teacher(encoder)  # fp32 for both: a FLOP count does not depend on the precision
    if recipe == "lean_cached":
        s.prepared = {"retain": SampleCache(batch), "forget": SampleCache(batch)}
        ours(s, StepModels(student=encoder, reference=teacher))  # fills the latent caches
        corruption.memo = None
    with FlopCounterMode(display=False) as counter:
        if recipe == "naive":
            loss = naive_loss(s, encoder, teacher)
        else:
            loss = ours(s, StepModels(student=encoder, reference=teacher))[0]
        loss.backward()
    benchmark.group = f"SD-1.5 inpainting step FLOPs (meta device) batch {batch}+{batch}"
    benchmark.extra_info.update(flops=counter.get_total_flops(), images=2 * batch)
    benchmark.pedantic(lambda: None, rounds=1)

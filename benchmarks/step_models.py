"""The models and batches the whole-step benchmarks run, and one training step of
either recipe on them: the lean step as `unlearn` runs it (TrainStep) or the
authors' recipe (AuthorsTrainStep). Random weights: speed does not depend on them.

CPU: small models, fp32. GPU: MAE ViT-L/16 at 224, MAGE ViT-B with its VQGAN at 256
and the Palette UNet at 256, the sizes of the paper's ImageNet runs.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable

import torch

from l2l_fast import UnlearnConfig, UnlearnRecipe
from l2l_fast.adapters import adapter_for
from l2l_fast.models import MAE, MAGE, PaletteUNet
from l2l_fast.models.presets import MAE_VIT_L
from l2l_fast.models.masks import parse_mask
from l2l_fast.models.presets import FASHION_MNIST_MAE, FASHION_MNIST_MAGE, FASHION_MNIST_PALETTE
from l2l_fast.unlearning.config import PRECISIONS
from l2l_fast.unlearning.recipe import frozen_teacher

from authors_recipe import authors_train_step

VIT_TINY_224 = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3,
                    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4)
VIT_L16_224 = MAE_VIT_L

# name: (builder, mask)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "mae_fashion_mnist": (lambda: MAE(**FASHION_MNIST_MAE), "inpaint:3"),
    "mage_fashion_mnist": (lambda: MAGE(**FASHION_MNIST_MAGE), "inpaint:3"),
    "palette_fashion_mnist": (lambda: PaletteUNet(**FASHION_MNIST_PALETTE), "inpaint:3"),
    "mae_vit_tiny_224": (lambda: MAE(**VIT_TINY_224), "random:0.75"),
    "mae_vit_l16_224": (lambda: MAE(**VIT_L16_224), "inpaint:8"),  # 8 x 8 of 14 x 14 patches hidden
    "mage_vit_b_256": (MAGE, "inpaint:8"),  # official sizes: 16 x 16 tokens
    "palette_256": (PaletteUNet, "inpaint:4"),  # the centre 128 x 128 of 256 x 256
}
CPU_RUNS = {"mae_fashion_mnist": 32, "mage_fashion_mnist": 32, "palette_fashion_mnist": 4, "mae_vit_tiny_224": 8}
GPU_MODELS = ("mae_vit_l16_224", "mage_vit_b_256", "palette_256")
GPU_BATCHES = (32, 64)
LR, GRAD_CLIP = 1e-4, 3.0


@functools.lru_cache(maxsize=1)
def _model(name: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs: ViT-L initialises in seconds on a GPU
        return MODELS[name][0]().to(device)


def has_caches(name: str, device: str) -> bool:
    """Whether "lean_cached" differs from "lean" on model `name`."""
    adapter = adapter_for(_model(name, device))
    return adapter.frozen_prepare or adapter.fixed_targets(parse_mask(MODELS[name][1]))


@dataclass
class Step:
    run: Callable[[], None]
    images: int  # images taken per step (forget + retain)


def build_step(name: str, recipe: str, precision: str, batch: int, device: str) -> Step:
    """One step of `recipe` on a fresh copy of model `name`, with `batch` forget and
    `batch` retain images resident on `device`. Recipes: "authors"; "lean", as the
    first epoch of `unlearn` runs it; "lean_cached", as later epochs run it, with the
    VQ tokens of real images and (fixed masks, one embedding tensor) the retain
    targets already cached; "lean_ckpt", "lean" with checkpoint_activations=True.
    The lean steps are those of an UnlearnRecipe, set up as `unlearn` sets it up."""
    model = copy.deepcopy(_model(name, device))
    adapter = adapter_for(model)
    channels, size, _ = adapter.image_shape
    mask = MODELS[name][1]
    g = torch.Generator().manual_seed(0)
    forget, retain = (torch.rand(batch, channels, size, size, generator=g) for _ in range(2))
    config = UnlearnConfig(steps=1 << 30, batch_size=batch, lr=LR, mask=mask, precision=precision, device=device,
                           grad_clip=GRAD_CLIP, progress=False, checkpoint_activations=recipe == "lean_ckpt",
                           cache_targets=recipe == "lean_cached" and adapter.fixed_targets(parse_mask(mask)))
    run = UnlearnRecipe(model, forget, retain, config)
    run.setup()
    inputs = run.inputs(0)
    if recipe == "authors":
        encoder = model.encoder
        authors = authors_train_step(adapter, encoder, frozen_teacher(encoder), PRECISIONS[precision], LR, GRAD_CLIP)
        return Step(lambda: authors(inputs), 2 * batch)
    if recipe != "lean_cached":
        inputs.prepared = None  # the first epoch: every real image tokenised in its step
    counter = iter(range(1 << 62))

    def step() -> None:
        index = next(counter)
        run.train_step(run.monitor, index, LR, inputs)
        if run.monitor.due(index):
            run.monitor.read(lambda record: None)

    return Step(step, 2 * batch)


def step_flops(step: Step) -> int:
    """Floating-point operations of one step, as torch's FLOP counter sees them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step.run()
    return counter.get_total_flops()

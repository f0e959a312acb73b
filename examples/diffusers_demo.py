"""Unlearning on a diffusers inpainter, end to end on 2 CPU cores: a small Palette-style
UNet2DModel (condition and noisy image on channels, a DDIM scheduler) trained here on
the shipped Fashion-MNIST demo images to fill the centre hole, then two classes
unlearned with the encoder-only objective; the per-class table of inpainting error
and a PNG grid, as `l2l-fast demo` shows for the MAE.

    python examples/diffusers_demo.py --out diffusers_demo

Needs `pip install ".[diffusers]"`. The trained UNet is kept in --out
(unet_<pretrain steps>steps.safetensors) and reused by a later run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from l2l_fast import adapt_diffusers, unlearn
from l2l_fast.data.assets import DEMO, load_demo_images
from l2l_fast.data import FASHION_MNIST_CLASSES, first_per_class
from l2l_fast.evaluation.before_after import format_table, per_class, save_demo_grid
from l2l_fast.evaluation.generation import generate, hole_errors, visible_pixels
from l2l_fast.training.pretrain import pretrain

# the demo's: the centre 12 x 12 pixels of 28 x 28 (a 7 x 7 grid of 4-pixel patches), two classes
MASK, FORGET_CLASSES = DEMO.mask, DEMO.forget_classes


def build_adapter(sample_steps: int):
    from diffusers import DDIMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(  # Palette-style: in_channels = condition + noisy image
        sample_size=28, in_channels=2, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    return adapt_diffusers(unet, scheduler=scheduler, patch_size=4, num_inference_steps=sample_steps)


def trained_adapter(weights: Path, pretrain_steps: int, sample_steps: int):
    """The adapter of the UNet trained on the demo's training images: read from `weights`, or trained for
    `pretrain_steps` steps and written there."""
    adapter = build_adapter(sample_steps)
    unet = adapter.model.unet
    if weights.exists():
        from safetensors.torch import load_file
        unet.load_state_dict(load_file(weights))
    else:
        train_images, _ = load_demo_images("train")
        print(f"Training a {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M-parameter UNet2DModel inpainter "
              f"on {train_images.shape[0]} images for {pretrain_steps} steps ...")
        pretrain(adapter, train_images, steps=pretrain_steps, batch_size=32, lr=2e-3, masks=(MASK,))
        from safetensors.torch import save_file
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, weights)
    unet.eval()
    return adapter


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="diffusers_demo")
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=450, help="unlearning steps")
    parser.add_argument("--batch-size", type=int, default=16)
    # steps, lr, alpha, target and forget maps: chosen on tuning images (benchmarks/results/diffusers_tuning)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=6.0, help="weight of the forget term")
    parser.add_argument("--diffusion-target", default="whole_noise", choices=("pure_noise", "noise_image", "whole_noise"),
                        help="the forget target (UnlearnConfig.diffusion_target)")
    parser.add_argument("--forget-maps", type=lambda v: None if v == "all" else int(v), default=1,
                        help="the forget term on the last N encoder maps (UnlearnConfig.forget_maps; all: every map)")
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--eval-per-class", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, every core; one is the fastest on a busy shared machine)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = trained_adapter(out / f"unet_{args.pretrain_steps}steps.safetensors", args.pretrain_steps,
                              args.sample_steps)
    unet = adapter.model.unet
    train_images, train_labels = load_demo_images("train")

    test_images, test_labels = load_demo_images("test")
    index = first_per_class(test_labels, range(10), args.eval_per_class)
    test_images, test_labels = test_images[index], test_labels[index]
    visible = visible_pixels(adapter, test_images.shape[0], MASK, batch_size=500)
    before_images = generate(adapter, test_images, MASK, batch_size=500)
    before = per_class(hole_errors(test_images, before_images, visible), test_labels)

    is_forget = torch.isin(train_labels, torch.tensor(FORGET_CLASSES))
    names = ", ".join(FASHION_MNIST_CLASSES[c] for c in FORGET_CLASSES)
    print(f"Unlearning {names} ({int(is_forget.sum())} images), keeping {int((~is_forget).sum())}; mask {MASK}.")
    unlearn(unet, train_images[is_forget], train_images[~is_forget], adapter=adapter, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, alpha=args.alpha, mask=MASK, progress=True,
            diffusion_target=args.diffusion_target, forget_maps=args.forget_maps, seed=0)
    unet.eval()
    after_images = generate(adapter, test_images, MASK, batch_size=500)
    after = per_class(hole_errors(test_images, after_images, visible), test_labels)
    print("\nInpainting error (mean squared error inside the hole) on held-out test images:")
    print(format_table(before, after, FORGET_CLASSES))

    grid = save_demo_grid(out / "diffusers_demo_grid.png", test_images, test_labels, visible, before_images,
                          after_images, FORGET_CLASSES)
    seconds = time.perf_counter() - started
    print(f"\nWrote {grid.resolve()}  ({seconds:.0f} s in all)")
    return {"before": before, "after": after, "grid": grid, "seconds": seconds}


if __name__ == "__main__":
    main()

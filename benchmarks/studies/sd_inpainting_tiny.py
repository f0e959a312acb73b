"""Does unlearning act on a Stable Diffusion inpainting pipeline? A tiny one (AutoencoderKL, 9-channel
UNet2DConditionModel with cross-attention, DDIM) is trained here on the shipped Fashion-MNIST demo images,
then T-shirt and trouser are unlearned through `adapt_diffusers(pipe, prompt_embeds=...)`; the hole error
of each class's held-out test images before and after, as `examples/diffusers_demo.py` does.

    python benchmarks/studies/sd_inpainting_tiny.py --out benchmarks/results/sd_inpainting_tiny

The VAE and UNet are kept in --out and reused. Grey images are given to the pipeline as RGB (the channel
repeated); the prompt is a fixed zero embedding with no guidance, since no text is involved.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from l2l_fast import adapt_diffusers, unlearn
from l2l_fast.data import FASHION_MNIST_CLASSES, first_per_class
from l2l_fast.data.assets import DEMO, load_demo_images
from l2l_fast.evaluation.before_after import format_table, per_class, save_demo_grid
from l2l_fast.evaluation.generation import generate, hole_errors, visible_pixels
from l2l_fast.training.files import write_text
from l2l_fast.training.pretrain import pretrain

TEXT_WIDTH = 16


def rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).contiguous()


def build_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, layers_per_block=1, sample_size=28)
    unet = UNet2DConditionModel(sample_size=14, in_channels=9, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=TEXT_WIDTH,
                                attention_head_dim=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_vae(vae, images: torch.Tensor, steps: int, batch_size: int = 64) -> float:
    """Reconstruction + a small KL term."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = rgb(images[torch.randint(images.shape[0], (batch_size,), generator=generator)]) * 2 - 1
        posterior = vae.encode(batch).latent_dist
        loss = F.mse_loss(vae.decode(posterior.sample(generator=generator)).sample, batch)
        loss = loss + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"vae step {step}: loss {loss.item():.4f}", flush=True)
    return loss.item()


def set_scaling_factor(vae, images: torch.Tensor) -> None:
    """The latents' scaling factor: 1 / their std over the first 512 images."""
    with torch.no_grad():
        latents = vae.encode(rgb(images[:512]) * 2 - 1).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))


def trained_pipeline(out: Path, images: torch.Tensor, vae_steps: int, unet_steps: int):
    from safetensors.torch import load_file, save_file

    pipe = build_pipeline()
    paths = {"vae": out / "vae.safetensors", "unet": out / "unet.safetensors"}
    if paths["vae"].exists():
        pipe.vae.load_state_dict(load_file(paths["vae"]))
    else:
        train_vae(pipe.vae, images, vae_steps)
        save_file({k: v.contiguous() for k, v in pipe.vae.state_dict().items()}, paths["vae"])
    pipe.vae.eval()
    set_scaling_factor(pipe.vae, images)
    adapter = adapt_diffusers(pipe, prompt_embeds=torch.zeros(1, 1, TEXT_WIDTH), guidance_scale=1.0,
                              num_inference_steps=10, patch_size=4)
    if paths["unet"].exists():
        pipe.unet.load_state_dict(load_file(paths["unet"]))
    else:
        pretrain(adapter, rgb(images), steps=unet_steps, batch_size=32, lr=2e-3, masks=(DEMO.mask,))
        save_file({k: v.contiguous() for k, v in pipe.unet.state_dict().items()}, paths["unet"])
    pipe.unet.eval()
    return pipe, adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/sd_inpainting_tiny")
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--unet-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=150, help="unlearning steps")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--diffusion-target", default="whole_noise")
    parser.add_argument("--forget-maps", type=lambda v: None if v == "all" else int(v), default=1)
    parser.add_argument("--eval-per-class", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = load_demo_images("train")
    pipe, adapter = trained_pipeline(out, train_images, args.vae_steps, args.unet_steps)
    trained = time.perf_counter()

    test_images, test_labels = load_demo_images("test")
    index = first_per_class(test_labels, range(10), args.eval_per_class)
    test_images, test_labels = rgb(test_images[index]), test_labels[index]
    visible = visible_pixels(adapter, test_images.shape[0], DEMO.mask, batch_size=500)
    before_images = generate(adapter, test_images, DEMO.mask, batch_size=500)
    before = per_class(hole_errors(test_images, before_images, visible), test_labels)

    forget = torch.isin(train_labels, torch.tensor(DEMO.forget_classes))
    unlearn_started = time.perf_counter()
    unlearn(pipe.unet, rgb(train_images[forget]), rgb(train_images[~forget]), adapter=adapter, steps=args.steps,
            batch_size=16, lr=args.lr, alpha=args.alpha, mask=DEMO.mask, seed=0, progress=True,
            diffusion_target=args.diffusion_target, forget_maps=args.forget_maps)
    unlearn_seconds = time.perf_counter() - unlearn_started
    pipe.unet.eval()
    after_images = generate(adapter, test_images, DEMO.mask, batch_size=500)
    after = per_class(hole_errors(test_images, after_images, visible), test_labels)
    table = format_table(before, after, DEMO.forget_classes)
    print(table)
    save_demo_grid(out / "grid.png", test_images[:, :1], test_labels, visible, before_images[:, :1],
                   after_images[:, :1], DEMO.forget_classes)
    names = ", ".join(FASHION_MNIST_CLASSES[c] for c in DEMO.forget_classes)
    record = {"forgotten": names, "settings": vars(args), "before": before, "after": after,
              "train_seconds": round(trained - started, 1), "unlearn_seconds": round(unlearn_seconds, 1),
              "total_seconds": round(time.perf_counter() - started, 1)}
    write_text(json.dumps(record, indent=1), out / "results.json")
    write_text(table + "\n", out / "table.txt")


if __name__ == "__main__":
    main()

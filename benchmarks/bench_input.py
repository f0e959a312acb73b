"""The input pipeline of image folders (issue 13), all against baselines of the same run:

- decode per image, JPEG draft (DCT-domain downscaling) against full decode, at 224 and 64;
- images/s through the step loader with 0, 1 and 2 workers, cold (every image decoded)
  and cached (a warm memory decode cache);
- an unlearning step of a 64-px MAE fed from folders against the same step fed the same
  images as a tensor: first epoch (every image decoded in its step) and steady state.

The folder is ImageNet-like (write_imagenet_like): sizes drawn around ImageNet's mean of
about 400 x 350 (4:3 and 3:4 shapes), smooth content plus grain saved at quality 90,
about 110 KB a file (the mean is printed with the results).

    python benchmarks/bench_input.py --write /tmp/imagenet_like      # the folder alone
    python benchmarks/bench_input.py --write /tmp/imagenet_like --interleave 15   # step ratios, in turn
    pytest benchmarks/bench_input.py --benchmark-json benchmarks/results/input/cpu_input.json
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from l2l_fast.data import ClassFolders
from l2l_fast.data.decode import decode_image
from l2l_fast.models import MAE
from l2l_fast.unlearning.config import UnlearnConfig
from l2l_fast.unlearning.recipe import UnlearnRecipe

CLASSES = [f"n{index:08d}" for index in range(4)]
PER_CLASS = int(os.environ.get("L2L_FAST_BENCH_INPUT_PER_CLASS", "24"))
MAE_64 = dict(img_size=64, patch_size=8, in_chans=3, embed_dim=192, depth=4, num_heads=3,
              decoder_embed_dim=96, decoder_depth=1, decoder_num_heads=3)
BATCH = 16
# one intra-op thread: on a shared 2-core machine a second thread mostly waits for the first
torch.set_num_threads(int(os.environ.get("L2L_FAST_BENCH_THREADS", "1")))


def write_imagenet_like(root: Path, classes=CLASSES, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    generator = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            long_side = int(np.clip(generator.normal(470, 60), 300, 640))
            short_side = long_side * 3 // 4
            width, height = (long_side, short_side) if generator.random() < 0.75 else (short_side, long_side)
            base = Image.fromarray(generator.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
                (width, height), Image.BICUBIC)
            grain = generator.normal(0, 30, (height, width, 3))
            pixels = np.clip(np.asarray(base, np.float64) + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:05d}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        root = write_imagenet_like(Path(tmp))
        files = sorted(root.glob("*/*.JPEG"))
        sizes = [f.stat().st_size for f in files]
        shapes = [Image.open(f).size for f in files]
        width, height = np.mean([s[0] for s in shapes]), np.mean([s[1] for s in shapes])
        print(f"\n{len(files)} JPEGs, mean {width:.0f} x {height:.0f}, mean {np.mean(sizes) / 1e3:.0f} KB; "
              f"load: {os.getloadavg()}")
        yield root


@pytest.mark.parametrize("size", [224, 64])
@pytest.mark.parametrize("draft", [False, True], ids=["full", "draft"])
def test_decode_per_image(benchmark, folder, size, draft):
    files = sorted(folder.glob("*/*.JPEG"))[:32]
    benchmark.group = f"decode {size}"
    benchmark.extra_info["images"] = len(files)
    benchmark.pedantic(lambda: [decode_image(f, size, 3, draft=draft) for f in files], rounds=3, iterations=1)


def _recipe(forget, retain, **options) -> UnlearnRecipe:
    torch.manual_seed(0)
    config = UnlearnConfig(steps=1 << 30, batch_size=BATCH, mask="inpaint:4", precision="fp32", progress=False,
                           repeat_samples=True, device="cpu", **options)
    recipe = UnlearnRecipe(MAE(**MAE_64), forget, retain, config)
    recipe.setup()
    return recipe


def _sets(folder):
    return (ClassFolders(folder, CLASSES[:1], image_size=64), ClassFolders(folder, CLASSES[1:], image_size=64))


@pytest.mark.parametrize("cached", [False, True], ids=["cold", "cached"])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_loader_images_per_second(benchmark, folder, workers, cached):
    """Steps of 2 x BATCH images through the feed alone (no model step)."""
    recipe = _recipe(*_sets(folder), num_workers=workers, decode_cache="memory" if cached else "off")
    steps = 4
    if cached:
        for _ in range(2 * len(recipe.retain) // BATCH + 2):  # two epochs of the retain set: all cached
            recipe.feed.next()
    benchmark.group = "loader"
    benchmark.extra_info["images_per_round"] = 2 * BATCH * steps
    try:
        benchmark.pedantic(lambda: [recipe.feed.next() for _ in range(steps)], rounds=3, iterations=1)
    finally:
        recipe.close()


@pytest.mark.parametrize("feed", ["tensors", "folders_first_epoch", "folders_steady"])
def test_unlearning_step_by_feed(benchmark, folder, feed):
    """One step (2 x 16 images, 64-px MAE); folders with the default workers."""
    sets = _sets(folder)
    if feed == "tensors":
        sets = [torch.stack([s[i][0] for i in range(len(s))]) for s in sets]
        recipe = _recipe(*sets)
    else:
        recipe = _recipe(*sets, decode_cache="memory" if feed == "folders_steady" else "off")
        if feed == "folders_steady":
            for step in range(2 * len(recipe.retain) // BATCH + 2):
                recipe.train_step(recipe.monitor, step, 1e-4, recipe.inputs(step))
    counter = iter(range(1 << 40))

    def step():
        index = next(counter)
        recipe.train_step(recipe.monitor, index, 1e-4, recipe.inputs(index))
        recipe.monitor.read(lambda record: None)

    benchmark.group = "step"
    try:
        benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    finally:
        recipe.close()


def delivered_rate(root: Path, *, size: int, workers: int, cached: bool, device: str, steps: int = 20,
                   batch: int = 64) -> float:
    """Images per second the feed delivers on `device` (decoded, pinned, copied, as float)."""
    import time

    from l2l_fast.models import MAE

    model = MAE(img_size=size, patch_size=16, in_chans=3, embed_dim=64, depth=1, num_heads=2,
                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    forget, retain = (ClassFolders(root, part, image_size=size) for part in (names[:1], names[1:]))
    config = UnlearnConfig(steps=1 << 30, batch_size=batch, progress=False, repeat_samples=True, device=device,
                           num_workers=workers, decode_cache="memory" if cached else "off",
                           prefetch=max(2, 2 * workers))
    recipe = UnlearnRecipe(model, forget, retain, config)
    recipe.setup()
    try:
        warm = (2 * len(retain) // batch + 2) if cached else 2
        for _ in range(warm):
            recipe.feed.next()
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            _, images = recipe.feed.next()
        if device == "cuda":
            torch.cuda.synchronize()
        return 2 * batch * steps / (time.perf_counter() - started)
    finally:
        recipe.close()


def interleaved_steps(root: Path, rounds: int = 15) -> dict[str, float]:
    """Median step time (s) of the three feeds, their steps taken in turn (one round: one
    step of each), so that a load change on a shared machine hits all three alike."""
    import statistics
    import time

    sets = _sets(root)
    tensors = [torch.stack([s[i][0] for i in range(len(s))]) for s in sets]
    recipes = {"tensors": _recipe(*tensors), "folders_steady": _recipe(*_sets(root), decode_cache="memory"),
               "folders_first_epoch": _recipe(*_sets(root), decode_cache="off")}
    times = {name: [] for name in recipes}
    try:
        warm = 2 * len(recipes["folders_steady"].retain) // BATCH + 2
        for step in range(rounds + warm):
            for name, recipe in recipes.items():
                started = time.perf_counter()
                recipe.train_step(recipe.monitor, step, 1e-4, recipe.inputs(step))
                recipe.monitor.read(lambda record: None)
                if step >= warm:
                    times[name].append(time.perf_counter() - started)
    finally:
        for recipe in recipes.values():
            recipe.close()
    return {name: statistics.median(t) for name, t in times.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write an ImageNet-like JPEG class folder; --rate: images/s "
                                                 "the feed delivers from it")
    parser.add_argument("--write", required=True, help="destination folder")
    parser.add_argument("--classes", type=int, default=len(CLASSES))
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--rate", action="store_true", help="then measure the feed's images/s")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                        help="then time the 64-px MAE step fed by tensors and folders, in turn")
    args = parser.parse_args()
    names = [f"n{index:08d}" for index in range(args.classes)]
    root = Path(args.write)
    if not root.is_dir() or not any(root.iterdir()):
        write_imagenet_like(root, names, args.per_class)
    print(f"{root}: {len(list(root.glob('*/*.JPEG')))} JPEGs")
    if args.rate:
        torch.set_num_threads(1)
        for workers in args.workers:
            for cached in (False, True):
                rate = delivered_rate(root, size=args.size, workers=workers, cached=cached, device=args.device)
                print(f"size {args.size}, {workers} workers, {'cached' if cached else 'cold'}: {rate:.0f} images/s "
                      f"on {args.device}", flush=True)
    if args.interleave:
        medians = interleaved_steps(root, args.interleave)
        for name, seconds in medians.items():
            print(f"step fed by {name}: median {seconds * 1e3:.1f} ms, {medians['tensors'] / seconds:.2f}x the "
                  f"tensor step's speed; load {os.getloadavg()}")

"""The largest batch each recipe fits in a memory budget (80 GB by default), its
images/s there, and from it the wall time of the paper's ImageNet setting on one GPU.

    python benchmarks/largest_batch.py --out largest_batch.json

For each GPU model and recipe (lean in bf16, the default on such GPUs, without and
with activation checkpointing; the authors' recipe in fp16, as their code runs),
the batch doubles from --start until a step runs out of memory, then --bisect steps
narrow it down. A batch fits when two steps run; the second is timed. ImageNet estimate, at the fastest batch tried: --epochs
passes over --forget forget images, each step also drawing as many retain images.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import GPU_MODELS, build_step  # noqa: E402

RECIPES = {"lean": "bf16", "lean_ckpt": "bf16", "authors": "fp16"}


def images_per_s(name: str, recipe: str, batch: int, device: str) -> float | None:
    """Images/s of the second of two steps at `batch`, or None when it does not fit."""
    try:
        step = build_step(name, recipe, RECIPES[recipe], batch, device)
        step.run()
        _sync(device)
        start = time.perf_counter()
        step.run()
        _sync(device)
        return step.images / (time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return None
    finally:
        step = None
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def largest(name: str, recipe: str, start: int, bisect: int, limit: int, device: str) -> dict:
    fits, fails = {}, None
    batch = start
    while batch <= limit:
        speed = images_per_s(name, recipe, batch, device)
        if speed is None:
            fails = batch
            break
        fits[batch] = speed
        batch *= 2
    if not fits:
        return {"largest_batch": None, "images_per_s": None, "first_failing": start, "tried": {}}
    low = max(fits)
    high = fails
    for _ in range(bisect if high else 0):
        middle = (low + high) // 2
        if middle in (low, high):
            break
        speed = images_per_s(name, recipe, middle, device)
        if speed is None:
            high = middle
        else:
            fits[middle], low = speed, middle
    return {"largest_batch": low, "images_per_s": fits[low], "first_failing": high, "tried": fits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-gb", type=float, default=80.0)
    parser.add_argument("--start", type=int, default=64)
    parser.add_argument("--limit", type=int, default=4096)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(GPU_MODELS))
    parser.add_argument("--forget", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out (nothing runs out)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = args.device
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_gb * 1e9 / total))
    images = 2 * args.forget * args.epochs
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    results = {"device": name, "memory_budget_GB": args.memory_gb,
               "imagenet_setting": {"forget": args.forget, "retain_per_step": "as many as forget",
                                    "epochs": args.epochs, "images": images}, "models": {}}
    for name in args.models:
        for recipe in RECIPES:
            found = largest(name, recipe, args.start, args.bisect, args.limit, device)
            found["precision"] = RECIPES[recipe]
            if found["tried"]:
                best = max(found["tried"], key=found["tried"].get)
                found["imagenet_hours"] = images / found["tried"][best] / 3600  # at the fastest batch tried
                found["imagenet_batch"] = best
            results["models"].setdefault(name, {})[recipe] = found
            print(json.dumps({name: {recipe: found}}), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Evaluation throughput per family: images/s of generation + feature networks, as
`l2l-fast eval` runs them (evaluate over a forget and a retain set).

    python benchmarks/bench_eval.py                        # the Fashion-MNIST-size models, CPU
    python benchmarks/bench_eval.py --device cuda --images 256 --batch-size 64 --json OUT.json

Models are randomly initialised at the shipped presets' sizes (speed does not depend on the
weights); features come from the shipped classifier. The figures are wall time on this
machine: generation (the family's sampler settings, given per row) and features separately.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from l2l_fast.adapters import adapter_for
from l2l_fast.evaluation import EvalSet, SamplerConfig, evaluate
from l2l_fast.evaluation.networks import load_network
from l2l_fast.models import MAE, MAGE, PaletteUNet, presets

# name -> (model type, preset, sampler settings, mask)
CASES = {
    "mae": (MAE, presets.FASHION_MNIST_MAE, {}, "inpaint:3"),
    "vq (8 iterations)": (MAGE, presets.FASHION_MNIST_MAGE, {"iterations": 8, "temperature": 4.5}, "inpaint:3"),
    "vq (20 iterations, paper)": (MAGE, presets.FASHION_MNIST_MAGE, {"iterations": 20, "temperature": 6.0}, "inpaint:3"),
    "diffusion (ddim 10 steps)": (PaletteUNet, presets.FASHION_MNIST_PALETTE, {"method": "ddim", "steps": 10, "eta": 0.0},
                                  "inpaint:3"),
}


def measure(name: str, images: int, batch_size: int, device: torch.device, out: Path) -> dict:
    model_type, preset, sampler, mask = CASES[name]
    torch.manual_seed(0)
    adapter = adapter_for(model_type(**preset).to(device))
    pictures = torch.rand(images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(images) % 10
    sets = [EvalSet(key, f"bench-{key}", images=pictures, labels=labels) for key in ("F", "R")]
    networks = {"classifier": load_network("classifier", "shipped")}
    options = dict(networks=networks, mask=mask, sampler=SamplerConfig.from_dict({adapter.model.family: sampler}),
                   batch_size=batch_size, device=str(device))
    evaluate({name: adapter}, sets[0], sets[0], **options)  # warm-up
    started = time.perf_counter()
    (row, _), = evaluate({name: adapter}, *sets, **options).tables[mask]
    wall = time.perf_counter() - started
    generate = row["times"]["generate_F"] + row["times"]["generate_R"]
    features = row["times"]["features_F"] + row["times"]["features_R"]
    return {"family": name, "images": 2 * images, "batch_size": batch_size, "sampler": sampler,
            "generate_s": generate, "features_s": features, "wall_s": wall,
            "images_per_s": 2 * images / (generate + features), "generate_images_per_s": 2 * images / generate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32, help="images per set (two sets)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    with tempfile.TemporaryDirectory() as out:
        for name in args.only:
            result = measure(name, args.images, args.batch_size, device, Path(out))
            results.append(result)
            print(f"{name:28s} {result['images_per_s']:8.1f} images/s (generation {result['generate_images_per_s']:.1f}"
                  f" images/s, features {result['features_s']:.2f} s of {result['generate_s'] + result['features_s']:.2f} s)")
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()

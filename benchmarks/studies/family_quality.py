"""Inpainting quality of pretrained checkpoints of each family on Fashion-MNIST test
images: mean squared error inside the hole (pixels in [0, 1]), FID and accuracy of the
completions in the project's classifier feature space, and generation time.

    python benchmarks/studies/family_quality.py mae.safetensors mage.safetensors palette.safetensors --out hole_mse.json

A diffusion checkpoint samples with DDIM over `--sample-steps` steps. A sampler that drew exactly
from the posterior of the hole given the visible pixels would have twice the hole MSE of that
posterior's mean, the best any regressor (such as the MAE) can reach; FID and accuracy do not
favour the mean.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from quality import evaluation_adapter

from l2l_fast import load_model
from l2l_fast.data import fashion_mnist, first_per_class
from l2l_fast.evaluation.generation import generate, hole_errors, visible_pixels
from l2l_fast.evaluation.metrics import Features, accuracy, frechet_distance, load_classifier
from l2l_fast.training.files import read


def completion_quality(adapter, images: torch.Tensor, labels: torch.Tensor, mask: str, classifier,
                       seed: int = 0) -> dict:
    """Hole MSE (mean over images of the squared error on the hidden pixels), FID against the true
    images and the classifier's accuracy, of the completions of `images` under `mask`."""
    generated = generate(adapter, images, mask, seed=seed, batch_size=100)
    visible = visible_pixels(adapter, images.shape[0], mask, seed, batch_size=100)
    return {"hole_mse": float(hole_errors(images, generated, visible).mean()),
            "FID": frechet_distance(images, generated, Features(classifier)),
            "accuracy": accuracy(classifier, generated, labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--masks", nargs="+", default=["inpaint:3", "outpaint:3"])
    parser.add_argument("--images", type=int, default=500, help="test images (every class equally)")
    parser.add_argument("--sample-steps", type=int, default=50, help="diffusion: DDIM steps")
    parser.add_argument("--out", help="also write the results to this .json")
    args = parser.parse_args()
    images, labels = fashion_mnist("test")
    per_class = args.images // 10
    index = first_per_class(labels, range(10), per_class)
    images, labels = images[index], labels[index]
    classifier = load_classifier()
    results = {}
    for path in args.checkpoints:
        model = load_model(path).eval()
        adapter = evaluation_adapter(model, args.sample_steps)
        _, meta = read(path)
        row = {"family": model.family, "pretrain": meta.get("pretrain")}
        for mask in args.masks:
            started = time.perf_counter()
            row.update({f"{k} {mask}": v for k, v in
                        completion_quality(adapter, images, labels, mask, classifier).items()})
            row[f"seconds {mask}"] = round(time.perf_counter() - started, 1)
        results[path] = row
        print(json.dumps({path: row}, indent=2), flush=True)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".tmp").write_text(json.dumps({"images": len(index), **results}, indent=2))
        out.with_suffix(".tmp").replace(out)


if __name__ == "__main__":
    main()

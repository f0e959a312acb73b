"""How far a Palette checkpoint's DDIM samples (the quality tables' sampler) are from
its DDPM samples over all 1,000 steps, on the same Fashion-MNIST test images:

    python benchmarks/sampler_gap.py CHECKPOINT --ddim 20 50 --images 200 \
        --out benchmarks/results/quality_diffusion/sampler_gap.json

Per sampler: mean squared error in the hole against the true image, FID and
accuracy in the project's classifier feature space, the mean squared difference to
the DDPM samples in the hole, and the wall time. Every sampler sees the same
corruptions (seed 0) and starts from the same generator seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from l2l_fast.adapters.diffusion import DiffusionAdapter
from l2l_fast.data import fashion_mnist, first_per_class
from l2l_fast.evaluation.evaluate import generate, hole_errors, visible_pixels
from l2l_fast.evaluation.metrics import Features, accuracy, frechet_distance, load_classifier
from l2l_fast.models import io as model_io


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--ddim", type=int, nargs="+", default=[20, 50], help="DDIM step counts to compare")
    parser.add_argument("--images", type=int, default=200, help="test images (every class equally)")
    parser.add_argument("--mask", default="inpaint:3")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", required=True, help="results .json")
    args = parser.parse_args()
    images, labels = fashion_mnist("test")
    index = first_per_class(labels, range(10), args.images // 10)
    images, labels = images[index], labels[index]
    model = model_io.load_model(args.checkpoint).eval()
    classifier = load_classifier()
    features = Features(classifier)
    samplers = [("ddpm", None)] + [("ddim", steps) for steps in args.ddim]
    visible = None
    generated, rows = {}, []
    for method, steps in samplers:
        adapter = DiffusionAdapter(model, sample_method=method, sample_steps=steps)
        visible = visible_pixels(adapter, images.shape[0], args.mask) if visible is None else visible
        started = time.perf_counter()
        fake = generate(adapter, images, args.mask, seed=0, batch_size=args.batch_size, progress=True)
        name = "DDPM 1000" if method == "ddpm" else f"DDIM {steps}"
        generated[name] = fake
        rows.append({"sampler": name, "seconds": round(time.perf_counter() - started, 1),
                     "hole_mse": float(hole_errors(images, fake, visible).mean()),
                     "hole_mse_to_ddpm": float(hole_errors(generated["DDPM 1000"], fake, visible).mean()),
                     "FID": frechet_distance(images, fake, features),
                     "accuracy": accuracy(classifier, fake, labels)})
        print(json.dumps(rows[-1]), flush=True)
    results = {"checkpoint": args.checkpoint, "images": int(images.shape[0]), "mask": args.mask,
               "note": "FID over this many images in the classifier's feature space: biased upward, compare "
                       "rows only with each other", "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""How far a Palette checkpoint's DDIM samples (the quality tables' sampler) are from
its DDPM samples over all 1,000 steps, on the same Fashion-MNIST test images:

    python benchmarks/studies/sampler_gap.py CHECKPOINT --ddim 20 50 --images 300 \
        --out benchmarks/results/quality_diffusion/sampler_gap.json

Per sampler: mean squared error in the hole against the true image (with its
standard error over images, and its paired difference to DDPM's on the same images),
FID and accuracy in the project's classifier feature space, the mean squared
difference to the DDPM samples in the hole, and the wall time. Every sampler sees the same
corruptions (seed 0) and starts from the same generator seed.

DDPM is slow on a CPU, so `--part I/N` completes only the I-th of N shares of the
batches and saves its samples next to `--out`; run the N parts at once (one per core)
with the same other arguments. The part that finds all N saved writes the results,
which equal a whole run's; a part already saved with the same settings is not run again.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from l2l_fast import load_model
from l2l_fast.adapters.diffusion import DiffusionAdapter
from l2l_fast.data import fashion_mnist, first_per_class
from l2l_fast.evaluation.generation import generate, hole_errors, visible_pixels
from l2l_fast.evaluation.metrics import Features, accuracy, frechet_distance, load_classifier


def parse_part(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part must be I/N, e.g. 1/2, got {text!r}") from None
    if not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"--part I/N needs 1 <= I <= N, got {text!r}")
    return part, parts


def part_path(out: Path, part: int, parts: int) -> Path:
    return out.with_name(f"{out.stem}.part{part}of{parts}.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--ddim", type=int, nargs="+", default=[20, 50], help="DDIM step counts to compare")
    parser.add_argument("--images", type=int, default=300, help="test images (every class equally)")
    parser.add_argument("--mask", default="inpaint:3")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--part", type=parse_part, default=(1, 1), metavar="I/N",
                        help="complete the I-th of N shares of the batches (default 1/1: all)")
    parser.add_argument("--out", required=True, help="results .json")
    args = parser.parse_args()
    part, parts = args.part
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"checkpoint": args.checkpoint, "images": args.images, "mask": args.mask,
                "batch_size": args.batch_size, "ddim": args.ddim}
    images, labels = fashion_mnist("test")
    index = first_per_class(labels, range(10), args.images // 10)
    images, labels = images[index], labels[index]
    batches = range(part - 1, -(-images.shape[0] // args.batch_size), parts)
    if not batches:
        parser.error(f"--part {part}/{parts}: {images.shape[0]} images in batches of {args.batch_size} "
                     f"leave this part no batch")
    model = load_model(args.checkpoint).eval()
    saved = part_path(out, part, parts)
    if saved.is_file() and torch.load(saved)["settings"] == settings:
        print(f"{saved} is there already: not run again")
    else:
        samples, seconds = {}, {}
        for method, steps in [("ddpm", None)] + [("ddim", steps) for steps in args.ddim]:
            adapter = DiffusionAdapter(model, sample_method=method, sample_steps=steps)
            name = "DDPM 1000" if method == "ddpm" else f"DDIM {steps}"
            started = time.perf_counter()
            samples[name] = generate(adapter, images, args.mask, seed=0, batch_size=args.batch_size,
                                     progress=True, batches=batches)
            seconds[name] = time.perf_counter() - started
            print(f"part {part}/{parts}: {name} took {seconds[name]:.0f} s", flush=True)
        torch.save({"settings": settings, "batches": list(batches), "samples": samples, "seconds": seconds},
                   saved.with_suffix(".tmp"))
        saved.with_suffix(".tmp").replace(saved)
    paths = [part_path(out, i, parts) for i in range(1, parts + 1)]
    if all(path.is_file() for path in paths):
        write_results(out, [torch.load(path) for path in paths], settings, images, labels, model, parts)
    else:
        print(f"saved {saved}; the results are written when all {parts} parts are saved")


def write_results(out, saved, settings, images, labels, model, parts) -> None:
    for piece in saved:
        if piece["settings"] != settings:
            raise ValueError(f"the saved parts were run with other settings: {piece['settings']} != {settings}")
    batch_indices = torch.arange(len(images)).split(settings["batch_size"])
    order = torch.cat([batch_indices[b] for piece in saved for b in piece["batches"]])
    images, labels = images[order], labels[order]
    visible = visible_pixels(DiffusionAdapter(model), len(labels), settings["mask"],
                             batch_size=settings["batch_size"])[order]
    classifier = load_classifier()
    features = Features(classifier)
    rows = []
    ddpm = torch.cat([piece["samples"]["DDPM 1000"] for piece in saved])
    ddpm_errors = hole_errors(images, ddpm, visible)
    for name in saved[0]["samples"]:
        fake = torch.cat([piece["samples"][name] for piece in saved])
        errors = hole_errors(images, fake, visible)
        rows.append({"sampler": name, "seconds": round(sum(piece["seconds"][name] for piece in saved), 1),
                     "hole_mse": float(errors.mean()),
                     "hole_mse_standard_error": float(errors.std() / len(errors) ** 0.5),
                     "hole_mse_minus_ddpm": float((errors - ddpm_errors).mean()),
                     "hole_mse_minus_ddpm_standard_error": float((errors - ddpm_errors).std() / len(errors) ** 0.5),
                     "hole_mse_to_ddpm": float(hole_errors(ddpm, fake, visible).mean()),
                     "FID": frechet_distance(images, fake, features),
                     "accuracy": accuracy(classifier, fake, labels)})
        print(json.dumps(rows[-1]), flush=True)
    results = {**settings, "images": len(labels), "parts": parts,
               "note": "seconds: summed over the parts. FID over this many images in the classifier's feature "
                       "space: biased upward, compare rows only with each other", "rows": rows}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

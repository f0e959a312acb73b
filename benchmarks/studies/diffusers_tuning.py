"""The diffusers demo's unlearning settings, chosen on tuning images (never on its test images):

    python benchmarks/studies/diffusers_tuning.py --out benchmarks/results/diffusers_tuning

The demo's UNet2DModel inpainter (examples/diffusers_demo.py; trained once and kept in --out) is unlearned
with each setting of the grid on the demo's training images less the last --tuning-per-class of each class,
and its mean hole MSE per class is measured on those held-out training images (same mask, DDIM steps and
seed as the demo). Chosen: the setting that raises the forget classes' hole MSE most with the retain
classes. mean within --retain-limit. Writes OUT/results.json and OUT/report.md.

`--pipeline sd` tunes the tiny Stable Diffusion inpainting pipeline of sd_inpainting_tiny.py instead (its
VAE and UNet read from --out, or trained there for --sd-train-steps; DDIM over its own 10 steps):

    python benchmarks/studies/diffusers_tuning.py --pipeline sd --out benchmarks/results/sd_inpainting_tiny/tuning
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from diffusers_demo import FORGET_CLASSES, MASK, trained_adapter  # noqa: E402

from l2l_fast import unlearn  # noqa: E402
from l2l_fast.data import load_demo_images  # noqa: E402
from l2l_fast.evaluation.before_after import per_class  # noqa: E402
from l2l_fast.evaluation.generation import generate, hole_errors, visible_pixels  # noqa: E402
from l2l_fast.training.files import write_text  # noqa: E402


def tuning_split(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """True for the last `per_class` images of each class."""
    held = torch.zeros_like(labels, dtype=torch.bool)
    for c in labels.unique():
        held[(labels == c).nonzero().flatten()[-per_class:]] = True
    return held


def ratios(before: dict, after: dict) -> dict:
    forget = [c for c in before if c in FORGET_CLASSES]
    retain = [c for c in before if c not in FORGET_CLASSES]
    mean = lambda scores, classes: sum(scores[c] for c in classes) / len(classes)  # noqa: E731
    return {"forget": mean(after, forget) / mean(before, forget), "retain": mean(after, retain) / mean(before, retain),
            "worst_retain_class": max(after[c] / before[c] for c in retain)}


def trained(args) -> tuple:
    """(adapter, the UNet that unlearning tunes, the shipped training images as the pipeline takes them, labels)."""
    images, labels = load_demo_images("train")
    if args.pipeline == "sd":
        from sd_inpainting_tiny import rgb, trained_pipeline

        pipe, adapter = trained_pipeline(args.out, images, *args.sd_train_steps)
        return adapter, pipe.unet, rgb(images), labels
    adapter = trained_adapter(args.out / "unet.safetensors", args.pretrain_steps, args.sample_steps)
    return adapter, adapter.model.unet, images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusers_tuning"))
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-4, 2e-3, 4e-3])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--target", nargs="+", default=["pure_noise", "whole_noise"])
    parser.add_argument("--forget-maps", nargs="+", type=lambda v: None if v == "all" else int(v), default=[None],
                        help="UnlearnConfig.forget_maps values ('all': every map, the authors')")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tuning-per-class", type=int, default=20)
    parser.add_argument("--retain-limit", type=float, default=1.1)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--pretrain-steps", type=int, default=400, help="training steps of the UNet kept in --out")
    parser.add_argument("--pipeline", choices=("demo", "sd"), default="demo",
                        help="the demo's pixel UNet2DModel, or sd_inpainting_tiny.py's Stable Diffusion pipeline")
    parser.add_argument("--sd-train-steps", type=int, nargs=2, default=(1000, 3600), metavar=("VAE", "UNET"),
                        help="with --pipeline sd: training steps of the VAE and UNet kept in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    adapter, unet, images, labels = trained(args)
    original = copy.deepcopy(unet.state_dict())
    held = tuning_split(labels, args.tuning_per_class)
    tune_images, tune_labels = images[held], labels[held]
    train_images, train_labels = images[~held], labels[~held]
    is_forget = torch.isin(train_labels, torch.tensor(FORGET_CLASSES))
    visible = visible_pixels(adapter, tune_images.shape[0], MASK, batch_size=500)
    before = per_class(hole_errors(tune_images, generate(adapter, tune_images, MASK, batch_size=500), visible),
                       tune_labels)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    model = (f"sd_inpainting_tiny.py's pipeline (VAE {args.sd_train_steps[0]}, UNet {args.sd_train_steps[1]} steps)"
             if args.pipeline == "sd" else f"unet.safetensors ({args.pretrain_steps} steps on the shipped images)")
    results.update({"pipeline": args.pipeline, "unet": model, "mask": MASK,
                    "forget_classes": list(FORGET_CLASSES), "tuning_per_class": args.tuning_per_class,
                    "steps": args.steps, "batch_size": args.batch_size, "sample_steps": args.sample_steps,
                    "retain_limit": args.retain_limit, "before": before})
    done = {(r["lr"], r["alpha"], r["target"], r.get("forget_maps")) for r in results["runs"]}
    for lr, alpha, target, maps in itertools.product(args.lr, args.alpha, args.target, args.forget_maps):
        if (lr, alpha, target, maps) in done:
            continue
        unet.load_state_dict(original)
        started = time.perf_counter()
        unlearn(unet, train_images[is_forget], train_images[~is_forget], adapter=adapter, steps=args.steps,
                batch_size=args.batch_size, lr=lr, alpha=alpha, mask=MASK, seed=0, progress=False,
                diffusion_target=target, forget_maps=maps)
        unet.eval()
        after = per_class(hole_errors(tune_images, generate(adapter, tune_images, MASK, batch_size=500), visible),
                          tune_labels)
        run = {"lr": lr, "alpha": alpha, "target": target, "forget_maps": maps, **ratios(before, after), "after": after,
               "seconds": round(time.perf_counter() - started, 1), "command": " ".join(sys.argv[1:])}
        results["runs"].append(run)
        print(f"lr {lr} alpha {alpha} {target} forget_maps {maps}: forget {run['forget']:.2f}x "
              f"retain {run['retain']:.3f}x "
              f"(worst class {run['worst_retain_class']:.2f}x) {run['seconds']:.0f} s", flush=True)
        write_text(json.dumps(results, indent=2), path)
    within = [r for r in results["runs"] if r["retain"] <= args.retain_limit]
    results["chosen"] = max(within, key=lambda r: r["forget"]) if within else None
    write_text(json.dumps(results, indent=2), path)
    write_text(report(results), args.out / "report.md")
    print(f"chosen: {results['chosen']}")


def report(results) -> str:
    title = {"demo": "The diffusers demo's settings", "sd": "The tiny Stable Diffusion inpainting pipeline's settings"}
    lines = [f"# {title[results.get('pipeline', 'demo')]}, chosen on tuning images", "",
             "Rebuilt by, one after the other (each adds its runs to results.json):", "",
             *[f"    python benchmarks/studies/diffusers_tuning.py {command}"
               for command in dict.fromkeys(r["command"] for r in results["runs"])], "",
             f"Model: {results['unet']}. "
             f"Tuning images: the last {results['tuning_per_class']} training images of each class of the demo's "
             f"shipped set (held out of the unlearning sets); mask {results['mask']}, {results['steps']} steps of "
             f"{results['batch_size']} + {results['batch_size']} images, DDIM {results['sample_steps']} steps, seed 0, "
             "one thread. Ratios: mean hole MSE after / before over the forget (T-shirt/top, Trouser) and the "
             "retain classes.", "",
             "| lr | alpha | target | forget_maps | forget × | retain × | worst retain class × | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results["runs"], key=lambda r: (r["target"], r.get("forget_maps") or 0, r["lr"], r["alpha"])):
        lines.append(f"| {r['lr']:g} | {r['alpha']:g} | {r['target']} | {r.get('forget_maps') or 'all'} | "
                     f"{r['forget']:.2f} | {r['retain']:.3f} | "
                     f"{r['worst_retain_class']:.2f} | {r['seconds']:.0f} |")
    chosen = results["chosen"]
    lines += ["", (f"Chosen (most forgetting with retain ≤ {results['retain_limit']}×): lr {chosen['lr']:g}, "
                   f"alpha {chosen['alpha']:g}, {chosen['target']}, forget_maps {chosen.get('forget_maps') or 'all'}."
                   if chosen else
                   f"No setting kept retain within {results['retain_limit']}×.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The paper's Table 1 structure on Fashion-MNIST with the shipped MAE, plus an
alpha ablation (Table 3):

    python benchmarks/quality.py --out benchmarks/results/quality_mae
    l2l-fast report benchmarks/results/quality_mae

Forget classes {0, 1}, retain {2, 3, 4, 5}, proxy {6, 7, 8, 9}; centre
inpainting and outpainting; unlearning on the training split, evaluation on the
test split with the project's Fashion-MNIST classifier as the feature network.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from l2l_fast import unlearn
from l2l_fast.adapters import adapter_for
from l2l_fast.cli.run import load_run_model
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation.evaluate import evaluate, visible_pixels
from l2l_fast.evaluation.metrics import Features, load_classifier, tsne_plot
from l2l_fast.evaluation.plots import loss_curves, save_grid, with_grey_hole
from l2l_fast.evaluation.report import write_report

METHODS = [
    ("MAX LOSS", "max_loss", "retain"),
    ("NOISY LABEL", "noisy_label", "retain"),
    ("RETAIN LABEL", "retain_label", "retain"),
    ("RANDOM ENCODER", "random_encoder", "retain"),
    ("Ours", "ours", "retain"),
    ("Ours (proxy retain)", "ours", "proxy"),
]
ALPHAS = (0.05, 0.1, 0.25, 0.5, 1.0)
GRID_EXAMPLES = 3


def subset(images, labels, classes):
    chosen = torch.isin(labels, torch.tensor(classes))
    return images[chosen], labels[chosen]


def grid_rows(test, generated_by_method, mask, adapter):
    """Rows: GRID_EXAMPLES forget and retain test images; columns: truth, input, each method."""
    rows = []
    for key, role in (("F", "forget"), ("R", "retain")):
        images = test[key][0][:GRID_EXAMPLES]
        corrupted = with_grey_hole(images, visible_pixels(adapter, images.shape[0], mask))
        for i in range(GRID_EXAMPLES):
            cells = [images[i], corrupted[i]] + [g[key][i] for g in generated_by_method.values()]
            rows.append((f"{role} {i}", torch.stack(cells)))
    return rows


def run_task(mask, args, data, classifier, out):
    test = {"R": data["test_retain"], "F": data["test_forget"]}
    rows, curves, generated = [], {}, {}
    original = load_run_model(args.model)
    adapter = adapter_for(original)
    metrics, fake = evaluate(adapter, test["R"], test["F"], mask=mask, classifier=classifier, seed=0)
    rows.append({"method": "Original", "metrics": metrics})
    generated["Original"] = fake
    print(f"[{mask}] Original: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in ("FID_R", "FID_F", "CLIP_R", "CLIP_F")))
    for name, method, retain_set in METHODS:
        model = load_run_model(args.model)
        log, started = [], time.perf_counter()
        retain_images = data["train_retain"] if retain_set == "retain" else data["train_proxy"]
        unlearn(model, data["train_forget"], retain_images, method=method, alpha=args.alpha, steps=args.steps,
                batch_size=args.batch_size, lr=args.lr, mask=mask, seed=args.seed, progress=False,
                callback=log.append)
        seconds = time.perf_counter() - started
        metrics, fake = evaluate(adapter_for(model), test["R"], test["F"], mask=mask, classifier=classifier, seed=0)
        metrics["unlearn_seconds"] = round(seconds, 1)
        rows.append({"method": name, "metrics": metrics})
        curves[name], generated[name] = log, fake
        print(f"[{mask}] {name} ({seconds:.0f} s): "
              + ", ".join(f"{k}={metrics[k]:.3f}" for k in ("FID_R", "FID_F", "CLIP_R", "CLIP_F")))
    slug = mask.replace(":", "_")
    grid = save_grid(out / f"grid_{slug}.png", grid_rows(test, generated, mask, adapter),
                     ["truth", "input", *generated])
    curve_png = loss_curves(out / f"curves_{slug}.png", curves)
    features = Features(classifier)
    with torch.no_grad():
        groups = {f"{role} / {name}": features(generated[name][key][: args.tsne_points])
                  for name in ("Original", "Ours") for key, role in (("F", "forget"), ("R", "retain"))}
    tsne = tsne_plot(groups, out / f"tsne_{slug}.png", title=f"{mask}: classifier features of generated images")
    return {"name": mask, "rows": rows, "grid": grid.name, "curves": curve_png.name, "tsne": tsne.name}


def run_ablation(mask, args, data, classifier):
    test = {"R": data["test_retain"], "F": data["test_forget"]}
    rows = []
    for alpha in ALPHAS:
        model = load_run_model(args.model)
        unlearn(model, data["train_forget"], data["train_retain"], alpha=alpha, steps=args.steps,
                batch_size=args.batch_size, lr=args.lr, mask=mask, seed=args.seed, progress=False)
        metrics, _ = evaluate(adapter_for(model), test["R"], test["F"], mask=mask, classifier=classifier, seed=0)
        rows.append({"method": f"Ours, alpha={alpha}", "metrics": metrics})
        print(f"[ablation {mask}] alpha={alpha}: FID_R={metrics['FID_R']:.3f} FID_F={metrics['FID_F']:.3f}")
    return {"name": f"alpha ablation ({mask})", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/quality_mae")
    parser.add_argument("--model", default="demo", help="'demo' (the shipped MAE) or a checkpoint")
    parser.add_argument("--masks", nargs="+", default=["inpaint:3", "outpaint:3"])
    parser.add_argument("--forget", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--retain", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--proxy", type=int, nargs="+", default=[6, 7, 8, 9])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--alpha", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tsne-points", type=int, default=300)
    parser.add_argument("--no-ablation", action="store_true")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    train_x, train_y = fashion_mnist("train")
    test_x, test_y = fashion_mnist("test")
    data = {
        "train_forget": subset(train_x, train_y, args.forget)[0],
        "train_retain": subset(train_x, train_y, args.retain)[0],
        "train_proxy": subset(train_x, train_y, args.proxy)[0],
        "test_forget": subset(test_x, test_y, args.forget),
        "test_retain": subset(test_x, test_y, args.retain),
    }
    classifier = load_classifier()
    started = time.perf_counter()
    tables = [run_task(mask, args, data, classifier, out) for mask in args.masks]
    ablation = None if args.no_ablation else run_ablation(args.masks[0], args, data, classifier)
    minutes = (time.perf_counter() - started) / 60
    results = {
        "title": "Unlearning the Fashion-MNIST MAE (paper's Table 1 structure)",
        "notes": [
            f"model: {args.model}; forget classes {args.forget}, retain {args.retain}, proxy {args.proxy}",
            f"unlearning: {args.steps} steps of {args.batch_size} forget + {args.batch_size} retain images, "
            f"lr {args.lr}, alpha {args.alpha}, seed {args.seed}; every method with the same budget",
            "metrics on the test split: FID and CLIP-style similarity in the feature space of the project's "
            "Fashion-MNIST classifier (penultimate layer), IS from its softmax, acc = its accuracy on generated images",
            f"total wall time {minutes:.1f} min on this machine",
        ],
        "tables": tables,
        "ablation": ablation,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {write_report(out)}")


if __name__ == "__main__":
    main()

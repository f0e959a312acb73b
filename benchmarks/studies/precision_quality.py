"""Is unlearning quality unchanged by the fast path? The MAE inpainting table's Ours
row for the lean step in fp32 and bf16 and for the authors' recipe (fp32 teacher
run twice, eager noise and loss), three seeds each, against the seed-to-seed spread.

    python benchmarks/studies/precision_quality.py --out benchmarks/results/precision_quality/precision_quality.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from l2l_fast import unlearn
from l2l_fast.adapters import adapter_for
from l2l_fast import load_model
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.metrics import load_classifier
from l2l_fast.unlearning import objectives

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the suites' support, at the top of benchmarks/
from authors_recipe import authors_step  # noqa: E402

KEYS = ("FID_R", "FID_F", "CLIP_R", "CLIP_F")


def authors_loss(s, m):
    return authors_step(s, m.student, m.reference)


def run(recipe: str, seed: int, data, classifier, args) -> dict:
    model = load_model("demo")
    lean = objectives.OBJECTIVES["ours"]
    if recipe == "authors fp32":  # the registry is what unlearn() reads
        objectives.OBJECTIVES["ours"] = dataclasses.replace(lean, loss=authors_loss)
    try:
        started = time.perf_counter()
        unlearn(model, data["forget"], data["retain"], steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                mask=args.mask, seed=seed, precision="bf16" if recipe == "lean bf16" else "fp32", progress=False)
        seconds = time.perf_counter() - started
    finally:
        objectives.OBJECTIVES["ours"] = lean
    metrics, _ = evaluate_model(adapter_for(model), data["test_retain"], data["test_forget"], mask=args.mask,
                                classifier=classifier, seed=0, batch_size=256, sampler=None)
    return {**{k: metrics[k] for k in KEYS}, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/precision_quality/precision_quality.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--mask", default="inpaint:3")
    args = parser.parse_args()
    train_x, train_y = fashion_mnist("train")
    test_x, test_y = fashion_mnist("test")
    pick = lambda x, y, c: (x[torch.isin(y, torch.tensor(c))], y[torch.isin(y, torch.tensor(c))])  # noqa: E731
    data = {"forget": pick(train_x, train_y, [0, 1])[0], "retain": pick(train_x, train_y, [2, 3, 4, 5])[0],
            "test_forget": pick(test_x, test_y, [0, 1]), "test_retain": pick(test_x, test_y, [2, 3, 4, 5])}
    classifier = load_classifier()
    results = {}
    for recipe in ("lean fp32", "lean bf16", "authors fp32"):
        runs = [run(recipe, seed, data, classifier, args) for seed in args.seeds]
        results[recipe] = {"runs": runs, **{f"{k} mean": statistics.mean(r[k] for r in runs) for k in KEYS},
                           **{f"{k} spread": max(r[k] for r in runs) - min(r[k] for r in runs) for k in KEYS}}
        print(recipe, json.dumps({k: round(v, 4) for k, v in results[recipe].items() if k != "runs"}), flush=True)
    base = results["lean fp32"]
    for recipe in ("lean bf16", "authors fp32"):
        results[recipe]["within seed spread of lean fp32"] = {
            k: abs(results[recipe][f"{k} mean"] - base[f"{k} mean"]) < base[f"{k} spread"] for k in KEYS}
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

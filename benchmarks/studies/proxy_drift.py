"""Where proxy-retain unlearning moves the shipped MAE: per-class embedding drift, per-parameter
change, and the classifier metrics on held-out training images (benchmarks/results/tradeoff_mae/drift/):

    python benchmarks/studies/proxy_drift.py proxy --out benchmarks/results/tradeoff_mae/drift   # or original,
                                                                           # real, proxy_nobias, proxy_standard

Split s1; unlearning reads Fashion-MNIST train without 200 seeded images per class, which are the
evaluation images (all eight non-forget classes as R). "real": retain classes {2, 3, 4, 5}; "proxy":
{6, 7, 8, 9}; "proxy_nobias": the proxy run with every bias and norm of the encoder frozen;
"proxy_standard": the proxy run with standard-normal noise targets (noise_stats="standard").
Drift of class c: ‖E_θ(T(x)) − E_0(T(x))‖² / ‖E_0(T(x))‖² over its first 200 held-out images.
"""
import argparse
import json
from pathlib import Path

import torch

from quality import SPLITS
from quality_tuning import pick, tuning_split

from l2l_fast import load_model, unlearn
from l2l_fast.adapters import adapter_for
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.metrics import load_classifier
from l2l_fast.models.masks import parse_mask

MASK = "inpaint:3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=("original", "real", "proxy", "proxy_nobias", "proxy_standard"))
    parser.add_argument("--out", default="benchmarks/results/tradeoff_mae/drift")
    args = parser.parse_args()
    torch.set_num_threads(1)
    forget_classes, retain_classes, proxy_classes = SPLITS["s1"]
    images, labels = fashion_mnist("train")
    tuning = tuning_split(labels, 200, 0)
    pool, held = (images[~tuning], labels[~tuning]), (images[tuning], labels[tuning])
    model, original = load_model("demo"), load_model("demo")
    if args.variant != "original":
        if args.variant == "proxy_nobias":
            for param in model.encoder.parameters():
                param.requires_grad_(param.dim() > 1)
        retain = pick(*pool, retain_classes if args.variant == "real" else proxy_classes)[0]
        noise_stats = "standard" if args.variant == "proxy_standard" else "batch"
        unlearn(model, pick(*pool, forget_classes)[0], retain, steps=300, batch_size=32, lr=1e-3, alpha=0.5,
                mask=MASK, seed=0, progress=False, noise_stats=noise_stats)
    kept = [c for c in range(10) if c not in forget_classes]
    metrics, _ = evaluate_model(adapter_for(model), pick(*held, kept), pick(*held, forget_classes), mask=MASK,
                                classifier=load_classifier(), seed=0, batch_size=256, sampler=None)
    tuned, before = adapter_for(model), adapter_for(original)
    drift = {}
    with torch.no_grad():
        for c in range(10):
            x = held[0][held[1] == c][:200]
            keep = tuned.draw(parse_mask(MASK), x.shape[0], torch.Generator().manual_seed(0))
            e = tuned.encode(tuned.encoder, tuned.prepare(x), keep)
            e0 = before.encode(before.encoder, before.prepare(x), keep)
            drift[c] = float((e - e0).pow(2).mean() / e0.pow(2).mean())
    start, end = original.state_dict(), model.state_dict()
    layer = {k: float((end[k] - v).norm() / (v.norm() + 1e-12)) for k, v in start.items()
             if v.is_floating_point() and not torch.equal(end[k], v)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"variant": args.variant, "FID_R": metrics["FID_R"], "FID_F": metrics["FID_F"],
              "per_class_R": metrics["per_class_R"], "drift": drift, "layer": layer}
    (out / f"{args.variant}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("variant", "FID_R", "FID_F")}))


if __name__ == "__main__":
    main()

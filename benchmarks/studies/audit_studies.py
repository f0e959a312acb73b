"""Does Ours forget like retraining? Two studies on Fashion-MNIST with the MAE models of
retrained_references.sh (run that first), each through `l2l_fast.evaluation.audit` and `evaluate`:

    python benchmarks/studies/audit_studies.py canary   # -> benchmarks/results/canary_mae_2000/
    python benchmarks/studies/audit_studies.py canary --folder benchmarks/results/canary_mae   # 500 canaries
    python benchmarks/studies/audit_studies.py classes  # -> benchmarks/results/retrained_mae_s1/

canary: the MAE trained with the canary glyph on N training images (Original) is unlearned on exactly
those images (forget: the N as trained; retain: 5,000 other training images) with the demo's settings
(l2l_fast.data.assets.DEMO); Original, Ours and the MAE retrained without the N are audited (forget: 500 of
the N, non-members: 500 test images) with the glyph: how often each regenerates it, the membership AUC
and the distance of each to Retrained; a grid of canary completions.

classes: the MAE trained without the canaries (Original) is unlearned on a class split of
benchmarks/studies/quality.py (--split, default s1: forget classes 0, 1, retain 2-5, proxy 6-9; 1,000 training
images per class) with the demo's settings: Ours (real retain), Ours (proxy retain), Ours (proxy retain with
the recommended retain_budget) and the RANDOM ENCODER baseline; they, the Original and the MAE retrained
without the forget classes are evaluated on the test split (hole MSE / PSNR, the classifier's accuracy and
FID on its features) and audited (forget: 500 training images of the forget classes; non-members: 500 test
images of the same classes), with each model's per-image hole-MSE distance to Retrained's completions:

    python benchmarks/studies/audit_studies.py classes --split s2   # -> benchmarks/results/retrained_mae_s2/
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path

import torch

import l2l_fast
from l2l_fast.adapters import adapter_for
from l2l_fast.data.assets import DEMO
from l2l_fast.data import fashion_mnist, split_by_class
from l2l_fast.data.canaries import plant, read_indices
from l2l_fast.evaluation import MetricsConfig, audit, evaluate
from l2l_fast.evaluation.generation import generate, visible_pixels
from l2l_fast.evaluation.metrics.pixels import pixel_errors
from l2l_fast.evaluation.plots import save_grid, with_grey_hole
from l2l_fast.training.files import write_text
from l2l_fast.models import save_model
from quality import SPLITS

RESULTS = Path("benchmarks/results")
CANARY = RESULTS / "canary_mae_2000"
RETAIN_BUDGET = 0.05  # examples/proxy_retain.yaml's


def pick(count: int, total: int, seed: int) -> torch.Tensor:
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def unlearned(original_path: Path, forget, retain, out: Path, steps: int, **options) -> torch.nn.Module:
    """`method` (default Ours) with the demo's settings on a copy of the original, saved to `out` (reused
    when there)."""
    if out.is_file():
        return l2l_fast.load_model(out)
    model = l2l_fast.load_model(original_path)
    tick = time.perf_counter()
    l2l_fast.unlearn(model, forget, retain, steps=steps, batch_size=DEMO.batch_size, lr=DEMO.lr,
                     alpha=DEMO.alpha, mask=DEMO.mask, seed=DEMO.seed, **options)
    save_model(model, out, extra={"unlearn": {"steps": steps, "batch_size": DEMO.batch_size, "lr": DEMO.lr,
                                              "alpha": DEMO.alpha, "mask": DEMO.mask, **options,
                                              "minutes": round((time.perf_counter() - tick) / 60, 2)}})
    return model


def pretrain_minutes(path: Path) -> float:
    from l2l_fast.training.files import read

    return read(path)[1]["pretrain"]["minutes"]


def audits(models: dict, forget, nonmembers, reference, out: Path, canaries: bool) -> dict:
    """name -> audit result (written to out/audit_<name>/), each against the retrained reference."""
    results = {}
    for name, model in models.items():
        results[name] = audit(model, forget, nonmembers, reference=reference, canaries=canaries,
                              mask=DEMO.mask, out=out / ("audit_" + re.sub(r"\W+", "_", name.lower()).strip("_")))
    return results


def audit_rows(results: dict, canaries: bool) -> list[str]:
    header = ["model", "membership AUC [95%]", "hole MSE forget", "hole MSE non-members",
              "hole MSE to Retrained (forget)", "to Retrained (non-members)", "FID to Retrained (forget)"]
    if canaries:
        header += ["canary regenerated: forget", "non-members with the glyph", "clean non-members"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        own, distance = result["models"]["model"], result["distance_to_reference"]
        cells = [name, f"{own['auc']:.3f} [{own['auc_interval'][0]:.3f}, {own['auc_interval'][1]:.3f}]",
                 f"{own['mse_forget']:.4f}", f"{own['mse_nonmembers']:.4f}", f"{distance['hole_mse_forget']:.4f}",
                 f"{distance['hole_mse_nonmembers']:.4f}", f"{distance['FID_forget']:.2f}"]
        if canaries:
            cells += [f"{own['canary'][k]['rate']:.1%} [{own['canary'][k]['interval'][0]:.1%}, "
                      f"{own['canary'][k]['interval'][1]:.1%}] (r {own['canary'][k]['correlation']:.2f})"
                      for k in ("forget", "nonmembers", "clean_nonmembers")]
        lines.append("| " + " | ".join(cells) + " |")
    reference = next(iter(results.values()))["models"]["reference"]
    cells = ["Retrained", f"{reference['auc']:.3f} [{reference['auc_interval'][0]:.3f}, "
             f"{reference['auc_interval'][1]:.3f}]", f"{reference['mse_forget']:.4f}",
             f"{reference['mse_nonmembers']:.4f}", "0", "0", "0"]
    if canaries:
        cells += [f"{reference['canary'][k]['rate']:.1%} [{reference['canary'][k]['interval'][0]:.1%}, "
                  f"{reference['canary'][k]['interval'][1]:.1%}] (r {reference['canary'][k]['correlation']:.2f})"
                  for k in ("forget", "nonmembers", "clean_nonmembers")]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def canary_study(steps: int, folder: Path = CANARY) -> None:
    images, labels = fashion_mnist("train")
    chosen = torch.tensor(read_indices(folder / "canary_mae.canaries.json"))
    others = torch.ones(images.shape[0], dtype=torch.bool)
    others[chosen] = False
    retain = images[others.nonzero().flatten()[pick(5000, int(others.sum()), seed=1)]]
    forget = images[chosen]
    test_images, _ = fashion_mnist("test")
    audited = forget[pick(500, forget.shape[0], seed=2)]
    nonmembers = test_images[pick(500, test_images.shape[0], seed=2)]
    original = l2l_fast.load_model(folder / "canary_mae.safetensors")
    retrained = l2l_fast.load_model(folder / "retrained_mae.safetensors")
    ours = unlearned(folder / "canary_mae.safetensors", plant(forget), retain, folder / "ours.safetensors", steps)
    models = {"Original": original, "Ours": ours}
    results = audits(models, audited, nonmembers, retrained, folder, canaries=True)
    shown = plant(forget[:6])
    visible = visible_pixels(adapter_for(original), 6, DEMO.mask)
    completions = {name: generate(adapter_for(m), shown, DEMO.mask) for name, m in
                   {**models, "Retrained": retrained}.items()}
    save_grid(folder / "canary_completions.png",
              [(f"canary {i}", torch.stack([shown[i], with_grey_hole(shown[i], visible[i]),
                                            *[c[i] for c in completions.values()]])) for i in range(6)],
              ["trained on", "input", "Original", "Ours", "Retrained"])
    minutes = {name: pretrain_minutes(folder / f) for name, f in (("Original", "canary_mae.safetensors"),
                                                                  ("Retrained", "retrained_mae.safetensors"))}
    summary = {"pretrain_minutes": minutes, "unlearn": {"steps": steps, "forget": forget.shape[0],
                                                        "retain": retain.shape[0]},
               "audits": {name: r for name, r in results.items()}}
    write_text(json.dumps(summary, indent=2), folder / "summary.json")
    write_text("\n".join([f"# Canary study (MAE, {forget.shape[0]} canaries)", "", *audit_rows(results, canaries=True), "",
                          f"Pretraining wall time (min): {minutes}", ""]), folder / "summary.md")


def classes_study(steps: int, split_name: str) -> None:
    folder = RESULTS / f"retrained_mae_{split_name}"
    forget_classes, retain_classes, proxy_classes = SPLITS[split_name]
    original_path = RESULTS / "canary_mae" / "retrained_mae.safetensors"
    train, train_labels = fashion_mnist("train")
    split = split_by_class(train, train_labels, forget_classes, retain_classes, proxy_classes, per_class=1000)
    forget = split.forget[0]
    unlearned_models = {
        "Ours": unlearned(original_path, forget, split.retain[0], folder / "ours.safetensors", steps),
        "Ours (proxy)": unlearned(original_path, forget, split.proxy[0], folder / "ours_proxy.safetensors", steps),
        "Ours (proxy, budget)": unlearned(
            original_path, forget, torch.utils.data.TensorDataset(*split.proxy),
            folder / "ours_proxy_budget.safetensors", steps, retain_budget=RETAIN_BUDGET),
        "RANDOM ENCODER": unlearned(original_path, forget, split.retain[0], folder / "random_encoder.safetensors",
                                    steps, method="random_encoder"),
    }
    original = l2l_fast.load_model(original_path)
    retrained = l2l_fast.load_model(folder / "retrained_mae.safetensors")
    models = {"Original": original, **unlearned_models, "Retrained": retrained}
    test, test_labels = fashion_mnist("test")
    test_split = split_by_class(test, test_labels, forget_classes, retain_classes, per_class=500)
    evaluation = evaluate(models, test_split.forget, test_split.retain, mask=DEMO.mask, keep_generated=True,
                          metrics=MetricsConfig(fid_inception=None, compute=["FID", "acc", "MSE_hole", "PSNR_hole"],
                                                use={"FID": "classifier"}))
    rows = evaluation.tables[DEMO.mask]
    generated = {row["method"]: keep for row, keep in rows}
    visible = {key: visible_pixels(adapter_for(original), s[0].shape[0], DEMO.mask)
               for key, s in (("F", test_split.forget), ("R", test_split.retain))}
    table = []
    for row, keep in rows:
        distance = {key: float(pixel_errors(keep[f"generated_{key}"], generated["Retrained"][f"generated_{key}"],
                                            visible[key])["MSE_hole"].mean()) for key in ("F", "R")}
        table.append({"method": row["method"], **{k: v for k, v in row["metrics"].items()
                                                  if not k.startswith("per_class")},
                      "MSE_to_Retrained_F": distance["F"], "MSE_to_Retrained_R": distance["R"]})
    forget_train = train[torch.isin(train_labels, torch.tensor(forget_classes))]
    members = forget_train[pick(500, forget_train.shape[0], seed=3)]
    results = audits({"Original": original, **unlearned_models}, members, test_split.forget[0], retrained, folder,
                     canaries=False)
    columns = ["method", "MSE_hole_F", "PSNR_hole_F", "acc_F", "FID_F", "MSE_hole_R", "PSNR_hole_R", "acc_R",
               "FID_R", "MSE_to_Retrained_F", "MSE_to_Retrained_R"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r[c] if c == "method" else f"{r[c]:.4f}" for c in columns) + " |" for r in table]
    minutes = {name: pretrain_minutes(path) for name, path in (("Original", original_path),
                                                               ("Retrained", folder / "retrained_mae.safetensors"))}
    write_text(json.dumps({"split": split_name, "pretrain_minutes": minutes, "table": table, "audits": results,
                           "networks": evaluation.metric_networks()}, indent=2), folder / "summary.json")
    title = (f"# Class-level study (MAE, split {split_name}: forget {forget_classes}; retain {retain_classes}; "
             f"proxy {proxy_classes})")
    write_text("\n".join([title, "", *lines, "", *audit_rows(results, canaries=False), "",
                          f"Pretraining wall time (min): {minutes}", ""]), folder / "summary.md")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["canary", "classes"])
    parser.add_argument("--steps", type=int, default=DEMO.steps, help="unlearning steps (default: the demo's)")
    parser.add_argument("--folder", type=Path, default=CANARY, help="canary: the models' folder")
    parser.add_argument("--split", choices=sorted(SPLITS), default="s1", help="classes: the class split")
    args = parser.parse_args()
    torch.manual_seed(0)
    canary_study(args.steps, args.folder) if args.study == "canary" else classes_study(args.steps, args.split)

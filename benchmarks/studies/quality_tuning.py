"""Choose a model's unlearning defaults without looking at the test split:

    python benchmarks/studies/quality_tuning.py --split s1 --out benchmarks/results/quality_tuning_mae
    python benchmarks/studies/quality_tuning.py --split s2 --out benchmarks/results/quality_tuning_mae
    python benchmarks/studies/quality_tuning.py --summarize --out benchmarks/results/quality_tuning_mae

(the shipped MAE; `--model CHECKPOINT --grid small` for the VQ generator, `--grid diffusion
--batch-size 16 --sample-steps 20` for Palette).

Fashion-MNIST's *training* split is cut, per class and seeded, into a tuning part
(`--held-out` images per class, used only for evaluation here) and the rest (the
images unlearning sees). Each (steps, lr, alpha) of the grid is one unlearning
run of "Ours" on real retain images, evaluated on the tuning part; the test split
is never read. Rule: among the settings whose FID_R is at most `--fid-r-limit`
times the original's on *every* tuning split, take the one with the largest
geometric mean over splits of FID_F / FID_F(original); when no setting meets it,
the same with `--fallback-limit` (the issue's FID_R target, 1.1x).

Each split writes grid_<split>.json as it goes (a run per line of the grid), so a
cut-short search keeps what it measured; --summarize applies the rule to what is
there and writes results.json and report.md.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from quality import SPLITS as TABLE_SPLITS
from quality import evaluation_adapter

from l2l_fast import unlearn
from l2l_fast import load_model
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.metrics import load_classifier

SPLITS = {name: {"forget": TABLE_SPLITS[name][0], "retain": TABLE_SPLITS[name][1]} for name in ("s1", "s2")}
# (steps, lr, alpha), in the order they run: the shipped setting first, then its neighbours
GRIDS = {
    "full": [(300, 5e-4, 0.25), (300, 1e-3, 0.25), (300, 2.5e-4, 0.25), (300, 2.5e-4, 0.5), (300, 5e-4, 0.5),
             (300, 1e-3, 0.5), (150, 1e-3, 0.25), (150, 1e-3, 0.5)],
    "small": [(300, 5e-4, 0.25), (300, 1e-3, 0.25), (300, 5e-4, 0.5), (300, 1e-3, 0.5)],
    # Palette at the budget its table affords on a CPU (100 steps; with --batch-size 16); each larger lr
    # was added when the best admissible setting lay at the grid's edge (2e-3 for the 1,000-step Palette,
    # then 4e-3 for the 3,000-step one)
    "diffusion": [(100, 1e-3, 0.5), (100, 1e-3, 1.0), (100, 2e-3, 0.5), (100, 2e-3, 1.0), (100, 4e-3, 0.5),
                  (100, 4e-3, 1.0), (100, 8e-3, 0.5), (100, 8e-3, 1.0)],
}
MASK = "inpaint:3"


def tuning_split(labels: torch.Tensor, held_out: int, seed: int) -> torch.Tensor:
    """Boolean [N]: the seeded `held_out` images of each class that form the tuning part."""
    chosen = torch.zeros_like(labels, dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    for c in labels.unique().tolist():
        where = (labels == c).nonzero().squeeze(1)
        if where.numel() <= held_out:
            raise ValueError(f"held_out={held_out} leaves no training images of class {c}")
        chosen[where[torch.randperm(where.numel(), generator=generator)[:held_out]]] = True
    return chosen


def pick(images, labels, classes):
    chosen = torch.isin(labels, torch.tensor(classes))
    return images[chosen], labels[chosen]


def search(args) -> None:
    split = SPLITS[args.split]
    images, labels = fashion_mnist("train")
    tuning = tuning_split(labels, args.held_out, args.seed)
    pool = (images[~tuning], labels[~tuning])
    held = (images[tuning], labels[tuning])
    forget_train, retain_train = pick(*pool, split["forget"])[0], pick(*pool, split["retain"])[0]
    sets = {"R": pick(*held, split["retain"]), "F": pick(*held, split["forget"])}
    classifier = load_classifier()
    path = Path(args.out) / f"grid_{args.split}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"split": args.split, **split, "runs": []}
    done = {(r["steps"], r["lr"], r["alpha"]) for r in record["runs"]}
    if "original" not in record:
        metrics, _ = evaluate_model(evaluation_adapter(load_model(args.model), args.sample_steps), sets["R"],
                                    sets["F"], mask=MASK, classifier=classifier, seed=0, batch_size=256, sampler=None)
        record["original"] = metrics
        path.write_text(json.dumps(record, indent=2))
    for steps, lr, alpha in GRIDS[args.grid]:
        if (steps, lr, alpha) in done:
            continue
        model, started = load_model(args.model), time.perf_counter()
        unlearn(model, forget_train, retain_train, steps=steps, batch_size=args.batch_size, lr=lr, alpha=alpha,
                mask=MASK, seed=args.seed, progress=False)
        metrics, _ = evaluate_model(evaluation_adapter(model, args.sample_steps), sets["R"], sets["F"], mask=MASK,
                                    classifier=classifier, seed=0, batch_size=256, sampler=None)
        metrics["seconds"] = round(time.perf_counter() - started, 1)
        record["runs"].append({"steps": steps, "lr": lr, "alpha": alpha, "metrics": metrics})
        path.write_text(json.dumps(record, indent=2))
        print(f"[{args.split}] steps={steps} lr={lr} alpha={alpha}: FID_R={metrics['FID_R']:.2f} "
              f"(orig {record['original']['FID_R']:.2f}) FID_F={metrics['FID_F']:.2f} "
              f"(orig {record['original']['FID_F']:.2f}) {metrics['seconds']} s", flush=True)


def summarize(args) -> None:
    out = Path(args.out)
    grids = [json.loads(p.read_text()) for p in sorted(out.glob("grid_*.json"))]
    if not grids:
        raise SystemExit(f"no grid_*.json in {out}: run a --split first")
    ratios = {}
    for grid in grids:
        base = grid["original"]
        for run in grid["runs"]:
            key = (run["steps"], run["lr"], run["alpha"])
            m = run["metrics"]
            ratios.setdefault(key, {})[grid["split"]] = {
                "FID_R_ratio": m["FID_R"] / base["FID_R"], "FID_F_ratio": m["FID_F"] / base["FID_F"],
                "CLIP_R_ratio": m["CLIP_R"] / base["CLIP_R"], "acc_R": m["acc_R"], "acc_F": m["acc_F"]}
    names = [g["split"] for g in grids]
    complete = {k: v for k, v in ratios.items() if set(v) == set(names)}
    limit = args.fid_r_limit
    admissible = {k: v for k, v in complete.items() if all(s["FID_R_ratio"] <= limit for s in v.values())}
    if not admissible and args.fallback_limit:
        limit = args.fallback_limit
        admissible = {k: v for k, v in complete.items() if all(s["FID_R_ratio"] <= limit for s in v.values())}

    def score(item):
        return math.exp(sum(math.log(s["FID_F_ratio"]) for s in item[1].values()) / len(item[1]))

    chosen = max(admissible.items(), key=score)[0] if admissible else None
    rows = []
    for key in sorted(ratios):
        row = {"steps": key[0], "lr": key[1], "alpha": key[2], "per_split": ratios[key],
               "admissible": key in admissible, "score": score((key, ratios[key])) if key in complete else None}
        rows.append(row)
    results = {"rule": f"largest geometric-mean FID_F ratio among settings with FID_R ratio <= {args.fid_r_limit} "
                       f"on every tuning split ({', '.join(names)}); if none, the same with {args.fallback_limit}",
               "limit_used": limit,
               "splits": {g["split"]: {"forget": g["forget"], "retain": g["retain"], "original": g["original"]}
                          for g in grids},
               "held_out_per_class": args.held_out, "mask": MASK, "batch_size": args.batch_size,
               "grid": rows, "chosen": None if chosen is None else dict(zip(("steps", "lr", "alpha"), chosen))}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    model = "the shipped MAE" if args.model == "demo" else args.model
    lines = [f"# Tuning the unlearning defaults of {model} on a held-out part of the training split", "",
             f"- tuning part: {args.held_out} seeded images per class of Fashion-MNIST *train*, never seen by "
             "unlearning; the test split is not read", f"- method: Ours, real retain, {MASK}, "
             f"batch {args.batch_size} forget + {args.batch_size} retain, seed {args.seed}",
             f"- rule: {results['rule']}", f"- FID_R limit that admitted settings: {limit}",
             f"- chosen: {results['chosen']}", ""]
    for name, split in results["splits"].items():
        o = split["original"]
        lines.append(f"- split {name}: forget {split['forget']}, retain {split['retain']}; original FID_R "
                     f"{o['FID_R']:.2f}, FID_F {o['FID_F']:.2f}, CLIP_R {o['CLIP_R']:.3f}")
    lines += ["", "| steps | lr | alpha | " + " | ".join(f"{n} FID_R× | {n} FID_F× | {n} CLIP_R×" for n in names)
              + " | admissible | score |", "|" + "---|" * (3 + 3 * len(names) + 2)]
    for row in rows:
        cells = []
        for n in names:
            s = row["per_split"].get(n)
            cells += ["–"] * 3 if s is None else [f"{s['FID_R_ratio']:.3f}", f"{s['FID_F_ratio']:.2f}",
                                                  f"{s['CLIP_R_ratio']:.3f}"]
        score_cell = "–" if row["score"] is None else f"{row['score']:.2f}"
        lines.append(f"| {row['steps']} | {row['lr']:g} | {row['alpha']} | " + " | ".join(cells)
                     + f" | {'yes' if row['admissible'] else 'no'} | {score_cell} |")
    fid_r = [s["FID_R_ratio"] for splits in ratios.values() for s in splits.values()]
    spread = f", and the grid's FID_R ratios span {min(fid_r):.2f}–{max(fid_r):.2f}×" if fid_r else ""
    lines += ["", "Caveats:", "",
              f"- one unlearning seed per setting{spread} (the seed spread of Ours is in the quality folders' "
              "report.md), so the choice among admitted settings is weak",
              *(["- the fallback limit was added (in the MAE's search, the first one run) after the first limit "
                 "admitted nothing on s2 (forgetting sneakers moves sandals)"] if limit != args.fid_r_limit else []),
              "- the tuning images are held out from unlearning, not from the generator's or the classifier's "
              "pretraining (`l2l-fast pretrain` and `train-classifier` read all of train)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}; chosen {results['chosen']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/quality_tuning_mae")
    parser.add_argument("--model", default="demo", help="'demo' (the shipped MAE) or a checkpoint")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full", help="the (steps, lr, alpha) settings")
    parser.add_argument("--sample-steps", type=int, default=50, help="diffusion: DDIM steps of every generation")
    parser.add_argument("--split", choices=sorted(SPLITS), help="run the grid on one tuning split")
    parser.add_argument("--summarize", action="store_true", help="apply the rule to the grids in --out")
    parser.add_argument("--held-out", type=int, default=500, help="tuning images per class")
    parser.add_argument("--fid-r-limit", type=float, default=1.05)
    parser.add_argument("--fallback-limit", type=float, default=1.10,
                        help="FID_R limit used when no setting meets --fid-r-limit on every split (0: none)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if not args.split and not args.summarize:
        parser.error("give --split NAME or --summarize")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    if args.split:
        search(args)
    if args.summarize:
        summarize(args)


if __name__ == "__main__":
    main()

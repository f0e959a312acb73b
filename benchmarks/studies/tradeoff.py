"""What each setting buys: retain damage against forgetting for an α sweep and a
`retain_budget` sweep, with the paper's baselines as points, on tuning images only.

    python benchmarks/studies/tradeoff.py --retain proxy --out benchmarks/results/tradeoff_mae
    python benchmarks/studies/tradeoff.py --plot --out benchmarks/results/tradeoff_mae

Palette's forget targets (`--targets`) against RANDOM ENCODER, at its tuned setting; with
`--diffusion-target whole_noise --forget-maps 1`, the α sweep of that target on the middle block alone:

    python benchmarks/studies/tradeoff.py --model benchmarks/results/quality_diffusion/palette_fm.safetensors \
        --retain real --alphas --budgets --targets pure_noise whole_noise --baselines random_encoder --steps 100 \
        --lr 4e-3 --batch-size 16 --held-out 50 --sample-steps 20 --out benchmarks/results/quality_diffusion_whole_noise/tuning

Fashion-MNIST *train* is cut as in quality_tuning.py: `--held-out` seeded images per class
are kept for evaluation and never seen by unlearning; the test split is not read. Split s1
(forget {0, 1}, retain {2, 3, 4, 5}, proxy {6, 7, 8, 9}) and inpainting unless `--split` and
`--mask` say otherwise; `--set` adds unlearn options to every Ours point. Unlearning sees the forget
classes and the retain (or proxy) classes, as (image, label) pairs so that the budget's check
works per class. Every model is evaluated on the held-out images of the retain classes (R)
and the forget classes (F) with the project's Fashion-MNIST classifier as the feature network
(FID_R, FID_F, the per-class FID of each retain class). One line per run in runs.jsonl, so
a cut-short sweep keeps what it measured; `--plot` draws tradeoff.png and writes report.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from quality import SPLITS, evaluation_adapter
from quality_tuning import pick, tuning_split

from l2l_fast import load_model, unlearn
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.metrics import Features, load_classifier
from l2l_fast.evaluation.neighbours import per_class_fid
from l2l_fast.evaluation.plots import _pyplot

BASELINES = ("random_encoder", "noisy_label", "retain_label")


def runs(args) -> list[dict]:
    """(name, unlearn options) of every point, in the order they run."""
    base = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, alpha=args.alpha, mask=args.mask,
                seed=args.seed, progress=False)
    base.update({k: v for k, v in (("diffusion_target", args.diffusion_target), ("forget_maps", args.forget_maps))
                 if v is not None})
    base.update(args.set)
    points = [{"name": "Original", "sweep": "original", "options": None}]
    points += [{"name": f"alpha {a:g}", "sweep": "alpha", "options": dict(base, alpha=a)} for a in args.alphas]
    points += [{"name": f"budget {b:g}", "sweep": "budget", "options": dict(base, retain_budget=b)}
               for b in args.budgets]
    points += [{"name": f"target {t}", "sweep": "target", "options": dict(base, diffusion_target=t)}
               for t in args.targets]
    ours_only = ("diffusion_target", "forget_maps", *args.set)
    points += [{"name": m, "sweep": "baseline", "options": {**{k: v for k, v in base.items() if k not in ours_only},
                                                            "method": m}} for m in args.baselines]
    return points


def evaluate(model, sets, classifier, sample_steps, mask) -> dict:
    metrics, fake = evaluate_model(evaluation_adapter(model, sample_steps), sets["R"], sets["F"], mask=mask, classifier=classifier,
                                   seed=0, batch_size=256, sampler=None)
    metrics["per_class_FID_R"] = per_class_fid(sets["R"][0], fake["R"], sets["R"][1], Features(classifier))
    return {k: v for k, v in metrics.items() if k in ("FID_R", "FID_F", "acc_R", "acc_F", "MSE_hole_R",
                                                        "MSE_hole_F", "per_class_R", "per_class_FID_R")}


def sweep(args) -> None:
    forget_classes, retain_classes, proxy_classes = SPLITS[args.split]
    images, labels = fashion_mnist("train")
    tuning = tuning_split(labels, args.held_out, args.seed)
    pool, held = (images[~tuning], labels[~tuning]), (images[tuning], labels[tuning])
    forget = pick(*pool, forget_classes)[0]
    retain = torch.utils.data.TensorDataset(*pick(*pool, proxy_classes if args.retain == "proxy" else retain_classes))
    sets = {"R": pick(*held, retain_classes), "F": pick(*held, forget_classes)}
    classifier = load_classifier()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    done = {json.loads(line)["name"] for line in path.read_text().splitlines()} if path.is_file() else set()
    for point in runs(args):
        if point["name"] in done or (args.points and point["name"] not in args.points):
            continue
        model, started = load_model(args.model), time.perf_counter()
        if point["options"] is not None:
            unlearn(model, forget, retain, adapter=evaluation_adapter(model, args.sample_steps), **point["options"])
        record = {**point, "retain": args.retain, "split": args.split, "mask": args.mask,
                  "metrics": evaluate(model, sets, classifier, args.sample_steps, args.mask),
                  "seconds": round(time.perf_counter() - started, 1)}
        with path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        print(f"{point['name']}: FID_R {record['metrics']['FID_R']:.2f} FID_F {record['metrics']['FID_F']:.2f} "
              f"({record['seconds']} s)", flush=True)


def ratios(records: list[dict]) -> list[dict]:
    original = next(r for r in records if r["sweep"] == "original")["metrics"]
    rows = []
    for r in records:
        m = r["metrics"]
        worst = max(m["per_class_FID_R"], key=lambda c: m["per_class_FID_R"][c] / original["per_class_FID_R"][c])
        rows.append({"name": r["name"], "sweep": r["sweep"], "FID_R×": m["FID_R"] / original["FID_R"],
                     "FID_F×": m["FID_F"] / original["FID_F"], "worst class": worst,
                     "worst class FID×": m["per_class_FID_R"][worst] / original["per_class_FID_R"][worst],
                     "acc_R": m["acc_R"], "seconds": r["seconds"]})
    return rows


def noise_tag(records: list[dict]) -> str:
    """'noise_stats X' for the noise statistics the runs set, '' for the default."""
    noise = {r["options"]["noise_stats"] for r in records if (r["options"] or {}).get("noise_stats")}
    return ", ".join(f"noise_stats {n}" for n in sorted(noise))


def draw(axis, rows: list[dict], suffix: str = "", dashed: bool = False) -> None:
    """The α, budget and target sweeps of `rows` as lines, the baselines and Original as crosses."""
    for sweep_name, style in (("alpha", "o-"), ("budget", "s-"), ("target", "d")):
        points = sorted((r for r in rows if r["sweep"] == sweep_name), key=lambda r: r["name"].split()[-1])
        if points:
            axis.plot([r["FID_R×"] for r in points], [r["FID_F×"] for r in points],
                      style.replace("-", "--") if dashed else style, label=f"Ours, {sweep_name} sweep{suffix}")
            for r in points:
                axis.annotate(r["name"].split()[-1], (r["FID_R×"], r["FID_F×"]), fontsize=7)
    for r in rows:
        if r["sweep"] == "baseline" or (r["sweep"] == "original" and not suffix):
            axis.plot(r["FID_R×"], r["FID_F×"], "x", label=r["name"] + suffix)


def plot(args) -> None:
    """tradeoff.png and report.md of OUT's runs; the runs of OUT's subfolders (other options on the same
    tuning images, e.g. standard_noise/) drawn beside them, dashed."""
    out = Path(args.out)
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    rows = ratios(records)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    draw(axis, rows)
    for sub in sorted(path.parent for path in out.glob("*/runs.jsonl")):
        sub_records = [json.loads(line) for line in (sub / "runs.jsonl").read_text().splitlines()]
        draw(axis, ratios(sub_records), f" ({noise_tag(sub_records) or sub.name})", dashed=True)
    axis.set_xlabel("FID_R / original (lower is better)")
    axis.set_ylabel("FID_F / original (higher forgets more)")
    setting = (f"split {records[0].get('split', 's1')}, {records[0].get('mask', 'inpaint:3')}, "
               f"{records[0]['retain']} retain" + (f", {noise_tag(records)}" if noise_tag(records) else ""))
    axis.set_title(f"{args.model}, {setting}, tuning images", fontsize=8)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "tradeoff.png", dpi=120)
    lines = [f"# Trade-off of {args.model}: {setting}, tuning images", "",
             "Classifier features (the project's Fashion-MNIST classifier) for every FID; ratios to the original.", "",
             "| run | FID_R× | FID_F× | worst retain class | its FID× | acc_R | seconds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['FID_R×']:.3f} | {r['FID_F×']:.2f} | {r['worst class']} | "
              f"{r['worst class FID×']:.2f} | {r['acc_R']:.3f} | {r['seconds']} |" for r in rows]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/tradeoff_mae")
    parser.add_argument("--retain", choices=("proxy", "real"), default="proxy")
    parser.add_argument("--split", choices=sorted(SPLITS), default="s1", help="forget, retain and proxy classes")
    parser.add_argument("--mask", default="inpaint:3", help="the mask of unlearning and evaluation")
    parser.add_argument("--alphas", type=float, nargs="*", default=[0.05, 0.25, 0.5, 1.0])
    parser.add_argument("--budgets", type=float, nargs="*", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--targets", nargs="*", default=[], help="diffusion_target values to compare (Palette)")
    parser.add_argument("--diffusion-target", help="Palette: every Ours point's forget target (default the library's)")
    parser.add_argument("--forget-maps", type=int, help="every Ours point's forget_maps (default: every map)")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="further unlearn options of every Ours point, e.g. noise_stats=standard")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES))
    parser.add_argument("--model", default="demo", help="'demo' (the shipped MAE) or a checkpoint")
    parser.add_argument("--sample-steps", type=int, default=20, help="diffusion: DDIM steps of every generation")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--held-out", type=int, default=200, help="tuning images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", nargs="*", help="run only these points (names as in runs.jsonl), e.g. one "
                        "share per core")
    parser.add_argument("--plot", action="store_true", help="draw tradeoff.png and write report.md from runs.jsonl")
    args = parser.parse_args()
    args.set = {key: json.loads(value) if value[:1] in "0123456789-[" else value
                for key, value in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    plot(args) if args.plot else sweep(args)


if __name__ == "__main__":
    main()

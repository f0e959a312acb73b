"""The paper's Table 1 structure on Fashion-MNIST with the shipped MAE, plus an
alpha ablation (Table 3):

    python benchmarks/studies/quality.py --out benchmarks/results/quality_mae
    l2l-fast report benchmarks/results/quality_mae

Forget classes {0, 1}, retain {2, 3, 4, 5}, proxy {6, 7, 8, 9}; centre
inpainting and outpainting; unlearning on the training split, evaluation on the
test split with the project's Fashion-MNIST classifier as the feature network.

Further class splits (`--split`, the classes of SPLITS), a subset of the methods
and the spread of every method over seeds, e.g. forgetting sneakers with sandals retained:

    python benchmarks/studies/quality.py --split s2 --masks inpaint:3 --methods Ours "Ours (proxy retain)" \
        --no-ablation --seeds 0 1 2 --out benchmarks/results/quality_mae_s2

`--resume` keeps the tables (and the ablation) an earlier run left in --out and runs only what is
missing: the masks it lacks, the spread over --seeds of the --spread-methods a kept table lacks, and the
ablation's spread over --seeds. So a cut-short run, or one extended by a mask, a method's spread or
further seeds, need not start over; only the first seed must be the kept run's.

`--merge` joins the tables of runs made with the same settings and other --masks (one per core, say)
into --out, as one run over all their masks would have made them:

    python benchmarks/studies/quality.py --merge parts/inpaint_3 parts/outpaint_3 --out benchmarks/results/quality_vq

Each table's retain classes whose accuracy or per-class FID moved past the
thresholds of l2l_fast/evaluation/neighbours.py are listed in the report.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from l2l_fast import unlearn
from l2l_fast.adapters import adapter_for
from l2l_fast.adapters.diffusion import DiffusionAdapter
from l2l_fast import load_model
from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.generation import visible_pixels
from l2l_fast.evaluation.metrics import Features, load_classifier, tsne_plot
from l2l_fast.evaluation.neighbours import per_class_fid
from l2l_fast.evaluation.plots import loss_curves, save_grid, with_grey_hole
from l2l_fast.evaluation.report import write_report
from l2l_fast.models.palette import PaletteUNet
from l2l_fast.unlearning.step_data import NOISE_STATS

METHODS = [
    ("MAX LOSS", "max_loss", "retain"),
    ("NOISY LABEL", "noisy_label", "retain"),
    ("RETAIN LABEL", "retain_label", "retain"),
    ("RANDOM ENCODER", "random_encoder", "retain"),
    ("Ours", "ours", "retain"),
    ("Ours (proxy retain)", "ours", "proxy"),
    ("Ours (proxy retain, budget)", "ours", "proxy_budget"),  # retain_budget on the labelled proxy set
    ("Ours (budget)", "ours", "retain_budget"),  # retain_budget on the labelled retain set
]
ALPHAS = (0.05, 0.1, 0.25, 0.5, 1.0)
SPLITS = {  # name: (forget, retain, proxy); each proxy holds the kinds (tops, shoes, bags) its retain set holds
    "s1": ([0, 1], [2, 3, 4, 5], [6, 7, 8, 9]),  # the paper-style split of benchmarks/results/quality_mae
    "s2": ([7], [5, 2, 3, 8], [9, 0, 4, 6]),  # sneaker forgotten, its neighbour sandal retained
    "s3": ([4], [2, 6, 7, 1], [0, 3, 5, 9]),  # coat forgotten, pullover and shirt retained; never tuned on
}
FAMILY_NAMES = {"mae": "MAE", "vq": "MAGE (VQ-token model)", "diffusion": "Palette diffusion model"}
SETTINGS = ("model", "forget", "retain", "proxy", "steps", "batch_size", "lr", "alpha", "retain_budget",
            "noise_stats", "diffusion_target", "sample_steps", "test_per_class", "seeds")  # what a resumed run must share with the tables it keeps (see resumed_as)
# what the tables made before these options ran with
EARLIER_DEFAULTS = {"retain_budget": 0.05, "diffusion_target": "pure_noise", "noise_stats": "batch"}
SPREAD = ("FID_R", "IS_R", "CLIP_R", "FID_F", "IS_F", "CLIP_F", "acc_R", "acc_F")
GRID_EXAMPLES = 3


def subset(images, labels, classes):
    chosen = torch.isin(labels, torch.tensor(classes))
    return images[chosen], labels[chosen]


def split_data(forget, retain, proxy, test_per_class=None) -> dict:
    """The training images of each role and the (images, labels) of the test split's forget and retain
    classes (the first `test_per_class` test images of each class, or all)."""
    train_x, train_y = fashion_mnist("train")
    test_x, test_y = fashion_mnist("test")
    if test_per_class:
        keep = torch.cat([(test_y == c).nonzero().squeeze(1)[:test_per_class] for c in range(10)]).sort().values
        test_x, test_y = test_x[keep], test_y[keep]
    return {
        "train_forget": subset(train_x, train_y, forget)[0],
        "train_retain": subset(train_x, train_y, retain)[0],
        "train_proxy": subset(train_x, train_y, proxy)[0],
        "train_proxy_labelled": torch.utils.data.TensorDataset(*subset(train_x, train_y, proxy)),
        "train_retain_labelled": torch.utils.data.TensorDataset(*subset(train_x, train_y, retain)),
        "test_forget": subset(test_x, test_y, forget),
        "test_retain": subset(test_x, test_y, retain),
    }


def grid_rows(test, generated_by_method, mask, adapter):
    """Rows: GRID_EXAMPLES forget and retain test images; columns: truth, input, each method."""
    rows = []
    for key, role in (("F", "forget"), ("R", "retain")):
        images = test[key][0][:GRID_EXAMPLES]
        visible = visible_pixels(adapter, test[key][0].shape[0], mask)[:GRID_EXAMPLES]  # as evaluate() drew
        corrupted = with_grey_hole(images, visible)
        for i in range(GRID_EXAMPLES):
            cells = [images[i], corrupted[i]] + [g[key][i] for g in generated_by_method.values()]
            rows.append((f"{role} {i}", torch.stack(cells)))
    return rows


def evaluation_adapter(model, sample_steps):
    """The model's adapter; a diffusion model's samples with DDIM over `sample_steps` steps."""
    if isinstance(model, PaletteUNet):
        return DiffusionAdapter(model, sample_steps=sample_steps)
    return adapter_for(model)


def evaluated(model, test, mask, classifier, sample_steps):
    """evaluate() plus the per-class FID of the retain classes (for the neighbour flags)."""
    adapter = evaluation_adapter(model, sample_steps)
    metrics, fake = evaluate_model(adapter, test["R"], test["F"], mask=mask, classifier=classifier, seed=0,
                                   batch_size=256, sampler=None)
    metrics["per_class_FID_R"] = per_class_fid(test["R"][0], fake["R"], test["R"][1], Features(classifier))
    return metrics, fake


def unlearned(args, data, method, retain_set, mask, seed, log=None, alpha=None):
    """A fresh copy of the model unlearned with `method`; a diffusion model's RETAIN LABEL targets are
    sampled with the evaluation's DDIM steps."""
    model = load_model(args.model)
    retain_images = {"retain": data["train_retain"], "proxy": data["train_proxy"],
                     "proxy_budget": data["train_proxy_labelled"],
                     "retain_budget": data["train_retain_labelled"]}[retain_set]
    extra = {"retain_budget": args.retain_budget} if retain_set.endswith("_budget") else {}
    if method == "ours" and isinstance(model, PaletteUNet):
        extra["diffusion_target"] = args.diffusion_target
    unlearn(model, data["train_forget"], retain_images, adapter=evaluation_adapter(model, args.sample_steps),
            method=method, alpha=args.alpha if alpha is None else alpha, steps=args.steps, noise_stats=args.noise_stats,
            batch_size=args.batch_size, lr=args.lr, mask=mask, seed=seed, progress=False,
            callback=None if log is None else log.append, **extra)
    return model


def spread_rows(name, first, seeds, run):
    """Mean and standard deviation rows of `name` over `seeds`: `first` holds seeds[0]'s metrics, and
    run(seed) returns each further seed's."""
    runs = [first] + [run(seed) for seed in seeds[1:]]
    values = {k: torch.tensor([m[k] for m in runs], dtype=torch.float64) for k in SPREAD}
    return [{"method": f"{name}, mean over seeds {seeds}", "metrics": {k: float(v.mean()) for k, v in values.items()}},
            {"method": f"{name}, std over seeds {seeds}", "metrics": {k: float(v.std()) for k, v in values.items()}}]


def spread_of(row):
    """(the method, the seeds' label) of a spread row, e.g. ("Ours", "[0, 1, 2]"); None for a plain row."""
    match = re.fullmatch(r"(.*), (?:mean|std) over seeds (\[.*\])", row["method"])
    return match.groups() if match else None


def evaluated_seed(args, data, classifier, name, method, retain_set, mask, alpha=None):
    """run(seed) for spread_rows: the metrics on the test split of `method` unlearned with that seed."""
    test = {"R": data["test_retain"], "F": data["test_forget"]}

    def run(seed):
        model = unlearned(args, data, method, retain_set, mask, seed, alpha=alpha)
        metrics, _ = evaluated(model, test, mask, classifier, args.sample_steps)
        print(f"[{mask}] {name} seed {seed}: FID_R={metrics['FID_R']:.3f} FID_F={metrics['FID_F']:.3f}", flush=True)
        return metrics
    return run


def seed_spread(mask, args, data, classifier, first_rows):
    """Mean and standard deviation over args.seeds of each method of args.spread_methods (default: every
    method in the table); seed args.seeds[0] is the table's own run."""
    rows = []
    for name, method, retain_set in METHODS:
        if name not in first_rows or (args.spread_methods and name not in args.spread_methods):
            continue
        rows += spread_rows(name, first_rows[name], args.seeds,
                            evaluated_seed(args, data, classifier, name, method, retain_set, mask))
    return {"name": f"{mask}: spread over seeds", "rows": rows}


def extend_spread(tables, mask, args, data, classifier) -> bool:
    """Give the kept `mask` table's spread over seeds the methods it lacks over args.seeds (a method's
    spread over other seeds is replaced); False when none was missing."""
    spread_name = f"{mask}: spread over seeds"
    kept = next((t for t in tables if t["name"] == spread_name), {"name": spread_name, "rows": []})
    kept["rows"] = [row for row in kept["rows"] if spread_of(row)[1] == str(args.seeds)]
    have = {spread_of(row)[0] for row in kept["rows"]}
    table = next(t for t in tables if t["name"] == mask)
    added = seed_spread(mask, args, data, classifier,
                        {r["method"]: r["metrics"] for r in table["rows"] if r["method"] not in have})
    if not added["rows"]:
        return False
    order = [m[0] for m in METHODS]
    kept["rows"] = sorted(kept["rows"] + added["rows"], key=lambda row: order.index(spread_of(row)[0]))
    if kept not in tables:
        tables.insert(tables.index(table) + 1, kept)
    return True


def run_task(mask, args, data, classifier, out):
    test = {"R": data["test_retain"], "F": data["test_forget"]}
    rows, curves, generated = [], {}, {}
    original = load_model(args.model)
    adapter = adapter_for(original)
    metrics, fake = evaluated(original, test, mask, classifier, args.sample_steps)
    rows.append({"method": "Original", "metrics": metrics})
    generated["Original"] = fake
    print(f"[{mask}] Original: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in ("FID_R", "FID_F", "CLIP_R", "CLIP_F")))
    for name, method, retain_set in METHODS:
        if args.methods and name not in args.methods:
            continue
        log, started = [], time.perf_counter()
        model = unlearned(args, data, method, retain_set, mask, args.seeds[0], log)
        seconds = time.perf_counter() - started
        metrics, fake = evaluated(model, test, mask, classifier, args.sample_steps)
        metrics["unlearn_seconds"] = round(seconds, 1)
        rows.append({"method": name, "metrics": metrics})
        curves[name], generated[name] = log, fake
        print(f"[{mask}] {name} ({seconds:.0f} s): "
              + ", ".join(f"{k}={metrics[k]:.3f}" for k in ("FID_R", "FID_F", "CLIP_R", "CLIP_F")), flush=True)
    slug = mask.replace(":", "_")
    grid = save_grid(out / f"grid_{slug}.png", grid_rows(test, generated, mask, adapter),
                     ["truth", "input", *generated])
    curve_png = loss_curves(out / f"curves_{slug}.png", curves)
    features = Features(classifier)
    with torch.no_grad():
        groups = {f"{role} / {name}": features(generated[name][key][: args.tsne_points])
                  for name in ("Original", "Ours") if name in generated
                  for key, role in (("F", "forget"), ("R", "retain"))}
    tsne = tsne_plot(groups, out / f"tsne_{slug}.png", title=f"{mask}: classifier features of generated images")
    table = {"name": mask, "rows": rows, "grid": grid.name, "curves": curve_png.name, "tsne": tsne.name}
    if len(args.seeds) < 2:
        return [table]
    return [table, seed_spread(mask, args, data, classifier, {r["method"]: r["metrics"] for r in rows})]


def run_ablation(mask, args, data, classifier, kept=None):
    """Ours at each of ALPHAS with seed args.seeds[0], then (for two seeds or more) each alpha's spread over
    args.seeds; what the `kept` ablation already holds is not run again."""
    title = f"alpha ablation ({mask})"
    if kept and kept["name"] != title:
        sys.exit(f"--resume: the kept ablation is {kept['name']!r}; this run's first mask would give {title!r}")
    kept_rows = {row["method"]: row for row in (kept or {}).get("rows", [])}
    rows, spread = [], []
    for alpha in ALPHAS:
        name = f"Ours, alpha={alpha}"
        run = evaluated_seed(args, data, classifier, f"ablation {name}", "ours", "retain", mask, alpha)
        if name not in kept_rows:
            kept_rows[name] = {"method": name, "metrics": run(args.seeds[0])}
        rows.append(kept_rows[name])
        if len(args.seeds) < 2:  # a kept spread stays as it is
            spread += [row for row in kept_rows.values() if (spread_of(row) or [None])[0] == name]
            continue
        mean, std = (f"{name}, {stat} over seeds {args.seeds}" for stat in ("mean", "std"))
        spread += [kept_rows[mean], kept_rows[std]] if mean in kept_rows else spread_rows(
            name, kept_rows[name]["metrics"], args.seeds, run)
    return {"name": title, "rows": rows + spread}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/quality_mae")
    parser.add_argument("--model", default="demo", help="'demo' (the shipped MAE) or a checkpoint")
    parser.add_argument("--masks", nargs="+", default=["inpaint:3", "outpaint:3"])
    parser.add_argument("--split", choices=sorted(SPLITS), help="a named class split (overrides the three below)")
    parser.add_argument("--forget", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--retain", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--proxy", type=int, nargs="+", default=[6, 7, 8, 9])
    parser.add_argument("--methods", nargs="+", choices=[m[0] for m in METHODS], help="rows to run (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="default: the MAE's tuned setting "
                        "(benchmarks/results/quality_tuning_mae)")
    parser.add_argument("--alpha", type=float, default=0.5, help="default: the MAE's tuned setting")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="unlearning seeds: the first for the tables, all for the spread over seeds")
    parser.add_argument("--spread-methods", nargs="+", choices=[m[0] for m in METHODS],
                        help="methods whose spread over --seeds is measured (default every method run)")
    parser.add_argument("--retain-budget", type=float, default=0.05,
                        help="the budget row's retain_budget (chosen on tuning images: results/tradeoff_mae)")
    parser.add_argument("--noise-stats", default="batch", choices=NOISE_STATS,
                        help="statistics of the forget targets' noise images (the MAE on outpainting and with proxy "
                        "retain: 'standard', chosen on tuning images: results/tradeoff_mae_outpaint, "
                        "results/tradeoff_mae)")
    parser.add_argument("--diffusion-target", default="pure_noise", choices=("pure_noise", "noise_image", "whole_noise"),
                        help="Palette: the Ours rows' forget target")
    parser.add_argument("--sample-steps", type=int, default=50, help="diffusion: DDIM steps of every generation")
    parser.add_argument("--tsne-points", type=int, default=300)
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--ablation-only", action="store_true", help="the alpha ablation alone (on the first mask)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the tables and ablation already in --out; run only what is missing")
    parser.add_argument("--merge", nargs="+", metavar="FOLDER",
                        help="join these folders' tables (same settings, other --masks) into --out; runs nothing")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="first N test images of each class (default all; small N for a quick check)")
    args = parser.parse_args()

    if args.merge:
        return merge(Path(args.out), [Path(folder) for folder in args.merge])
    if args.split:
        args.forget, args.retain, args.proxy = SPLITS[args.split]
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seeds[0])
    data = split_data(args.forget, args.retain, args.proxy, args.test_per_class)
    classifier = load_classifier()
    started, family = time.perf_counter(), load_model(args.model).family
    tables, ablation, earlier_notes = earlier_results(out, args) if args.resume else ([], None, [])
    done, changed = {table["name"] for table in tables}, False
    for mask in [] if args.ablation_only else args.masks:
        if mask not in done:
            tables += run_task(mask, args, data, classifier, out)
        elif len(args.seeds) < 2 or not extend_spread(tables, mask, args, data, classifier):
            continue
        changed = True
        save(out, args, family, data, tables, ablation, started, earlier_notes, finished=False)
    if not args.no_ablation:
        extended = run_ablation(args.masks[0], args, data, classifier, kept=ablation)
        changed, ablation = changed or extended != ablation, extended
    if changed:
        save(out, args, family, data, tables, ablation, started, earlier_notes, finished=True)
    else:
        print(f"--resume: nothing is missing from {out / 'results.json'}; left as it was")


def resumed_as(key, value):
    """What of a SETTINGS value a resumed run must share: of the seeds only the first, the one the tables'
    rows ran with (the spreads name the seeds they are over)."""
    if value is None and key in EARLIER_DEFAULTS:
        return EARLIER_DEFAULTS[key]
    return value[:1] if key == "seeds" and value else value


def earlier_results(out, args):
    """(tables, ablation, notes) of out/results.json, the notes prefixed with what they describe;
    ([], None, []) when there is none. Exits when the earlier run's SETTINGS differ from args."""
    path = out / "results.json"
    if not path.exists():
        return [], None, []
    results = json.loads(path.read_text())
    if "settings" not in results:
        print(f"warning: {path} predates recorded settings; check its notes match this run", flush=True)
    else:
        differ = [f"{k} {results['settings'][k]!r} there, {getattr(args, k)!r} here" for k in SETTINGS
                  if resumed_as(k, results["settings"].get(k)) != resumed_as(k, getattr(args, k))]
        if differ:
            sys.exit(f"--resume: {path} was made with other settings: " + "; ".join(differ))
    kept = [t["name"] for t in results["tables"]] + (["the ablation"] if results.get("ablation") else [])
    print(f"resuming {path}: kept " + ", ".join(kept), flush=True)
    prefix = f"kept from an earlier run ({', '.join(kept)}): "
    notes = [n if n.startswith("kept from an earlier run") else prefix + n for n in results["notes"]]
    return results["tables"], results.get("ablation"), notes


def save(out, args, family, data, tables, ablation, started, earlier_notes, finished):
    """results.json (atomically) and report.md for what has run so far."""
    minutes = (time.perf_counter() - started) / 60
    results = {
        "title": f"Unlearning the Fashion-MNIST {FAMILY_NAMES[family]} (paper's Table 1 structure)",
        "notes": [
            "rebuilt by: python benchmarks/studies/quality.py " + " ".join(sys.argv[1:]),
            f"model: {args.model}; forget classes {args.forget}, retain {args.retain}, proxy {args.proxy}",
            f"unlearning: {args.steps} steps of {args.batch_size} forget + {args.batch_size} retain images, "
            f"lr {args.lr}, alpha {args.alpha}, noise_stats {args.noise_stats}, seed {args.seeds[0]}; every method "
            "with the same budget",
            *(["diffusion: RETAIN LABEL's targets are the original model's DDIM samples over "
               f"{args.sample_steps} steps"] if family == "diffusion" else []),
            f"test images: {len(data['test_retain'][0])} retain, {len(data['test_forget'][0])} forget"
            + (f" (the first {args.test_per_class} of each class)" if args.test_per_class else " (all)"),
            "metrics on the test split: FID and CLIP-style similarity in the feature space of the project's "
            "Fashion-MNIST classifier (penultimate layer), IS from its softmax, acc = its accuracy on generated images",
            *([f"generation: DDIM over {args.sample_steps} steps (eta 0), seed 0"] if family == "diffusion" else []),
            f"total wall time {minutes:.1f} min on this machine" + ("" if finished else " so far (cut short)"),
            *earlier_notes,
        ],
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "tables": tables,
        "ablation": ablation,
    }
    write_results(out, results)


def merge(out, parts):
    """Join the tables of the `parts` folders, runs with the same settings and other masks, into `out`."""
    missing = [str(part) for part in parts if not (part / "results.json").is_file()]
    if missing:
        sys.exit(f"--merge: no results.json in {', '.join(missing)}")
    runs = [(part, json.loads((part / "results.json").read_text())) for part in parts]
    shared = [note for note in runs[0][1]["notes"] if all(note in results["notes"] for _, results in runs)]
    tables, notes = [], ["merged by: python benchmarks/studies/quality.py " + " ".join(sys.argv[1:]), *shared]
    for part, results in runs:
        if results.get("settings") != runs[0][1].get("settings"):
            sys.exit(f"--merge: {part} and {parts[0]} were made with other settings")
        if results.get("ablation"):
            sys.exit(f"--merge: {part} holds an ablation; merge runs made with --no-ablation")
        twice = {t["name"] for t in results["tables"]} & {t["name"] for t in tables}
        if twice:
            sys.exit(f"--merge: {sorted(twice)} in more than one of the folders")
        tables += results["tables"]
        notes += [f"{part}: {note}" for note in results["notes"] if note not in shared]
    out.mkdir(parents=True, exist_ok=True)
    for part, results in runs:
        for table in results["tables"]:
            for figure in (table[key] for key in ("grid", "curves", "tsne") if key in table):
                shutil.copy2(part / figure, out / figure)
    write_results(out, {**runs[0][1], "notes": notes, "tables": tables, "ablation": None})


def write_results(out, results):
    """out/results.json (atomically), then the report.md made from it."""
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out / "results.json")
    print(f"wrote {write_report(out)}")


if __name__ == "__main__":
    main()

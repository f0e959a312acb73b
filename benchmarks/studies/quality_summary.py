"""The issue's quality targets, checked on the results folders benchmarks/studies/quality.py wrote:

    python benchmarks/studies/quality_summary.py benchmarks/results/quality_{mae,vq,diffusion}* \
        --out benchmarks/results/quality_summary.md

Per folder and mask, Ours against Original on the test split (the mean over seeds
when the folder has a spread table, with the standard deviation over seeds of the
ratio): FID_R ratio <= 1.1, CLIP_R ratio >= 0.97, FID_F ratio >= 2, the CLIP_F drop
at least 3x the CLIP_R drop, and the proxy-retain FID_R ratio <= 1.15. A second table
per folder and mask: the retain class whose FID rose most under Ours (seed 0), whether
Ours dominates RANDOM ENCODER (no higher FID_R, higher FID_F; means over seeds), and the
runs with `retain_budget` on the real and the proxy retain set, from the folder itself or
its `<folder>_budget` and `<folder>_real_budget` siblings (benchmarks/studies/quality.py
--methods "Ours (proxy retain, budget)" or "Ours (budget)"). A third table for the folders run with
--noise-stats standard: each of their Ours rows against its FID_R target, its worst retain class,
and RANDOM ENCODER of the folder with the same split and test images.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from l2l_fast.data.fashion_mnist import CLASSES
from quality import EARLIER_DEFAULTS

TARGETS = "FID_R× ≤ 1.1, CLIP_R× ≥ 0.97, FID_F× ≥ 2, CLIP_F drop ≥ 3 × CLIP_R drop, proxy FID_R× ≤ 1.15"


def _rows(results: dict, mask: str) -> dict:
    rows = {}
    for table in results["tables"]:
        if table["name"] in (mask, f"{mask}: spread over seeds"):
            rows.update({row["method"]: row["metrics"] for row in table["rows"]})
    return rows


def _over_seeds(rows: dict, name: str):
    """(metrics of method `name`, their std over seeds or None, the seeds' label)."""
    for method, metrics in rows.items():
        if method.startswith(f"{name}, mean over seeds"):
            std = rows[method.replace("mean", "std")]
            return metrics, std, method.split("seeds ")[1]
    return rows.get(name), None, "one seed"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary_rows(folder: Path) -> list[str]:
    results = json.loads((folder / "results.json").read_text())
    masks = [t["name"] for t in results["tables"] if "spread" not in t["name"]]
    lines = []
    for mask in masks:
        rows = _rows(results, mask)
        original, (ours, std, seeds) = rows["Original"], _over_seeds(rows, "Ours")
        if ours is None:
            continue
        fid_r, clip_r = ours["FID_R"] / original["FID_R"], ours["CLIP_R"] / original["CLIP_R"]
        fid_f = ours["FID_F"] / original["FID_F"]
        drop_r, drop_f = original["CLIP_R"] - ours["CLIP_R"], original["CLIP_F"] - ours["CLIP_F"]
        drop_ratio = float("inf") if drop_r <= 0 else drop_f / drop_r

        def spread(key, base, std=std):
            return "" if std is None else f" ± {std[key] / base:.3f}"

        proxy, proxy_std, proxy_seeds = _over_seeds(rows, "Ours (proxy retain)")
        proxy_cell = "–" if proxy is None else (
            f"{proxy['FID_R'] / original['FID_R']:.3f}{spread('FID_R', original['FID_R'], proxy_std)} "
            f"({_mark(proxy['FID_R'] / original['FID_R'] <= 1.15)})" + ("" if proxy_std else ", one seed"))
        lines.append(
            f"| {folder.name} | {mask} | {seeds} "
            f"| {fid_r:.3f}{spread('FID_R', original['FID_R'])} ({_mark(fid_r <= 1.1)}) "
            f"| {clip_r:.3f}{spread('CLIP_R', original['CLIP_R'])} ({_mark(clip_r >= 0.97)}) "
            f"| {fid_f:.2f}{spread('FID_F', original['FID_F'])} ({_mark(fid_f >= 2)}) "
            f"| {drop_ratio:.1f} ({_mark(drop_ratio >= 3)}) | {proxy_cell} |")
    return lines


BUDGET_FOLDERS = ("_budget", "_real_budget")  # siblings quality.py wrote with --methods "Ours (... budget)"


def _ratio_cell(row, original, std=None) -> str:
    if row is None:
        return "–"
    cell = f"{row['FID_R'] / original['FID_R']:.3f} / {row['FID_F'] / original['FID_F']:.2f}"
    return cell + ("" if std is not None else " (one seed)")


def _worst_class(row, original) -> str:
    """The retain class whose FID rose most from `original` to `row` (seed 0's rows), its ratio and mark."""
    per_class, base = row.get("per_class_FID_R"), original.get("per_class_FID_R")
    if not per_class or not base:
        return "–"
    name = max(per_class, key=lambda c: per_class[c] / base[c])
    ratio = per_class[name] / base[name]
    return f"{CLASSES[int(name)]}: {ratio:.2f} ({_mark(ratio <= 1.5)})"


def _fid_ratios(metrics: dict, original: dict) -> dict:
    return {key: metrics[key] / original[key] for key in ("FID_R", "FID_F")}


def _budget_cell(sources: list[tuple[dict, dict]], name: str, limit: float, random_encoder) -> str:
    """Row `name` of the first of `sources` ((rows by method, settings)) that has it: its retain_budget,
    FID_R× / FID_F× with the FID_R× mark against `limit`, the worst retain class and whether it dominates
    `random_encoder` (its FID ratios to its own Original, or None)."""
    for rows, settings in sources:
        metrics, std, _ = _over_seeds(rows, name)
        if metrics is not None:
            original = rows["Original"]
            ratios, budget = _fid_ratios(metrics, original), (EARLIER_DEFAULTS | settings)["retain_budget"]
            cell = (f"{budget:g}: {_ratio_cell(metrics, original, std)} ({_mark(ratios['FID_R'] <= limit)}); "
                    f"{_worst_class(rows[name], original)}")
            return cell + ("" if random_encoder is None else f"; dominates: {_dominates(ratios, random_encoder)}")
    return "–"


def _dominates(ours: dict, other: dict) -> str:
    """'yes' when `ours` has no higher FID_R and a higher FID_F than `other` (both on one Original's scale)."""
    return "yes" if ours["FID_R"] <= other["FID_R"] and ours["FID_F"] > other["FID_F"] else "**no**"


def neighbour_rows(folder: Path) -> list[str]:
    """Worst retain class, Ours against RANDOM ENCODER and the budget runs, per mask of `folder`."""
    results = json.loads((folder / "results.json").read_text())
    siblings = [json.loads((sibling / "results.json").read_text())
                for sibling in (folder.parent / f"{folder.name}{suffix}" for suffix in BUDGET_FOLDERS)
                if (sibling / "results.json").is_file()]
    lines = []
    for mask in [t["name"] for t in results["tables"] if "spread" not in t["name"]]:
        rows = _rows(results, mask)
        sources = [(rows, results["settings"])]
        sources += [(_rows(sibling, mask), sibling["settings"]) for sibling in siblings]
        original, (ours, ours_std, _) = rows["Original"], _over_seeds(rows, "Ours")
        if ours is None:
            continue
        random_encoder, re_std, _ = _over_seeds(rows, "RANDOM ENCODER")
        re_ratios = None if random_encoder is None else _fid_ratios(random_encoder, original)
        dominates = "–" if re_ratios is None else _dominates(_fid_ratios(ours, original), re_ratios)
        lines.append(f"| {folder.name} | {mask} | {_worst_class(rows['Ours'], original)} "
                     f"| {_ratio_cell(ours, original, ours_std)} | {_ratio_cell(random_encoder, original, re_std)} "
                     f"| {dominates} | {_budget_cell(sources, 'Ours (budget)', 1.1, re_ratios)} "
                     f"| {_budget_cell(sources, 'Ours (proxy retain, budget)', 1.15, re_ratios)} |")
    return lines


OURS_ROWS = (("Ours", 1.1), ("Ours (budget)", 1.1), ("Ours (proxy retain)", 1.15),
             ("Ours (proxy retain, budget)", 1.15))  # each with its FID_R× target
SPLIT_SETTINGS = ("model", "forget", "retain", "proxy", "test_per_class")


def _baseline_rows(loaded: dict[Path, dict], settings: dict, mask: str) -> Optional[dict]:
    """The rows of `mask` of the folder among `loaded` (results by folder) with the same model, classes and test
    images as `settings` that ran RANDOM ENCODER; None when there is none."""
    for results in loaded.values():
        if all(results["settings"].get(k) == settings.get(k) for k in SPLIT_SETTINGS):
            rows = _rows(results, mask)
            if _over_seeds(rows, "RANDOM ENCODER")[0] is not None:
                return rows
    return None


def noise_rows(folder: Path, loaded: dict[Path, dict]) -> list[str]:
    """Each Ours row of a folder run with noise_stats 'standard': FID_R× / FID_F× with their marks, the worst
    retain class, and RANDOM ENCODER of the folder with the same split, on that folder's Original."""
    results = loaded[folder]
    lines = []
    for mask in [t["name"] for t in results["tables"] if "spread" not in t["name"]]:
        rows, baseline = _rows(results, mask), _baseline_rows(loaded, results["settings"], mask)
        for name, limit in OURS_ROWS:
            ours, std, _ = _over_seeds(rows, name)
            if ours is None:
                continue
            original = rows["Original"]
            ratio = _fid_ratios(ours, original)
            cells = ["–", "–"]
            if baseline is not None:
                random_encoder, re_std, _ = _over_seeds(baseline, "RANDOM ENCODER")
                re_ratio = _fid_ratios(random_encoder, baseline["Original"])
                cells = [f"{re_ratio['FID_R']:.3f} / {re_ratio['FID_F']:.2f}" + ("" if re_std else " (one seed)"),
                         _dominates(ratio, re_ratio)]
            mark = f"{_mark(ratio['FID_R'] <= limit)}, {_mark(ratio['FID_F'] >= 2)}"
            lines.append(f"| {folder.name} | {mask} | {name} | {_ratio_cell(ours, original, std)} ({mark}) "
                         f"| {_worst_class(rows[name], original)} | {cells[0]} | {cells[1]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = ["# Quality targets per family, split and mask (Ours against Original, test split)", "",
             f"Targets: {TARGETS}. Ratios are Ours / Original; ± is the standard deviation over seeds of Ours "
             "(real and proxy retain, where the folder has them). Each folder's report.md has the full table and its "
             "settings.",
             "", "| folder | mask | seeds | FID_R× | CLIP_R× | FID_F× | CLIP_F drop ÷ CLIP_R drop | proxy FID_R× |",
             "|---|---|---|---|---|---|---|---|"]
    folders = [f for f in args.folders if (f / "results.json").is_file() and not f.name.endswith(BUDGET_FOLDERS)]
    for folder in folders:
        lines += summary_rows(folder)
    lines += ["", "Neighbours, the baseline and the budget: the retain class whose classifier FID rose most under Ours "
              "(seed 0; target ≤ 1.5), FID_R× / FID_F× of Ours and of RANDOM ENCODER (means over seeds where the "
              "folder has them), whether Ours dominates it (no higher FID_R, higher FID_F), and the runs with "
              "retain_budget (the budget first) on the real retain set (target FID_R× ≤ 1.1) and on "
              "the proxy set (target ≤ 1.15), each with its worst retain class and whether it dominates RANDOM "
              "ENCODER.", "",
              "| folder | mask | worst retain class, FID× | Ours FID_R× / FID_F× | RANDOM ENCODER | Ours dominates "
              "| Ours (budget) | Ours (proxy retain, budget) |", "|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        lines += neighbour_rows(folder)
    loaded = {folder: json.loads((folder / "results.json").read_text()) for folder in folders}
    standard = [folder for folder in folders if loaded[folder]["settings"].get("noise_stats") == "standard"]
    if standard:
        lines += ["", "Standard-normal noise targets (quality.py --noise-stats standard, chosen on tuning images): "
                  "each Ours row with its FID_R× target (1.1 real retain, 1.15 proxy) and FID_F× ≥ 2, its worst retain "
                  "class (seed 0), and RANDOM ENCODER of the folder with the same split and test images (ratios to "
                  "that folder's Original).",
                  "", "| folder | mask | row | FID_R× / FID_F× | worst retain class, FID× | RANDOM ENCODER "
                  "| Ours dominates |", "|---|---|---|---|---|---|---|"]
        for folder in standard:
            lines += noise_rows(folder, loaded)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

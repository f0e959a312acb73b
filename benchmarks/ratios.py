"""Ratio baselines: what travels between machines is the ratio of two timings measured
in the same run (fused op vs the eager expression, lean step vs the authors' step), not
their times. A paired benchmark (bench_regression.py) times its baseline and its candidate
in alternate rounds, so that a change of load falls on both; its `extra_info` holds the
pair's name and its ratio: the median over rounds of baseline time / candidate time (the
candidate's speed-up; higher is better).

A baseline file, benchmarks/baselines/<machine kind>.json:

    {"machine_kind": "cpu-2core", "statistic": "...", "fraction": 0.3, "fraction_rule": "...",
     "threads": 1, "source": {"commit", "date", "machine", "runs"},
     "pairs": {NAME: {"ratio": median over runs, "spread": [min, max], "runs": N, "fraction": F}}}

A run regresses when a pair's ratio falls below its fraction (the pair's own, else the
file's) x its baseline ratio.

    python benchmarks/ratios.py --kind    # this machine's kind
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys

STATISTIC = "median of per-round ratios, interleaved"
KIND_KEY = "l2l_fast_machine_kind"


def machine_kind(device: str = "cpu") -> str:
    """"cpu-<cores>core", or the GPU's name in short ("h200") for CUDA benchmarks."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name().lower()
        found = re.search(r"\b([a-z]+\d{2,4}[a-z]*)\b", name.replace("nvidia", ""))
        return found.group(1) if found else re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"cpu-{os.cpu_count()}core"


def round_ratio(baseline_times, candidate_times) -> float:
    """The median over rounds of baseline time / candidate time, rounds taken in pairs."""
    if not candidate_times or len(baseline_times) != len(candidate_times):
        raise ValueError(f"one baseline time per candidate round expected, got {len(baseline_times)} "
                         f"and {len(candidate_times)}")
    return statistics.median(b / c for b, c in zip(baseline_times, candidate_times))


def json_ratios(results: dict) -> dict[str, float]:
    """{pair: ratio} of the paired benchmarks of a pytest-benchmark JSON."""
    found = {}
    for bench in results["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "pair" in info:
            found[info["pair"]] = info["ratio"]
    return found


def load_baseline(path) -> dict:
    with open(path) as handle:
        baseline = json.load(handle)
    for key in ("machine_kind", "fraction", "pairs"):
        if key not in baseline:
            raise ValueError(f"{path}: not a ratio baseline (no {key!r})")
    return baseline


def fraction_of(baseline: dict, pair: str) -> float:
    return baseline["pairs"].get(pair, {}).get("fraction", baseline["fraction"])


def regressions(ratios: dict[str, float], baseline: dict) -> list[str]:
    """One message per pair whose ratio is below fraction x its baseline ratio."""
    source = baseline.get("source", {})
    found = []
    for pair, ratio in sorted(ratios.items()):
        base, fraction = baseline["pairs"].get(pair), fraction_of(baseline, pair)
        if base and ratio < fraction * base["ratio"]:
            low, high = base.get("spread", (base["ratio"], base["ratio"]))
            found.append(f"{pair}: ratio {ratio:.3f} is below {fraction} x baseline {base['ratio']:.3f} "
                         f"(= {fraction * base['ratio']:.3f}; baseline spread {low:.3f}-{high:.3f} over "
                         f"{base.get('runs', '?')} runs, commit {source.get('commit', '?')}, "
                         f"{baseline['machine_kind']})")
    return found


def report(ratios: dict[str, float], baseline: dict) -> list[str]:
    """A line per pair: its ratio, its baseline and the floor."""
    lines = []
    for pair in sorted(set(ratios) | set(baseline["pairs"])):
        base = baseline["pairs"].get(pair)
        ratio = ratios.get(pair)
        if ratio is None:
            lines.append(f"  {pair}: not run")
        elif base is None:
            lines.append(f"  {pair}: {ratio:.3f} (no baseline)")
        else:
            floor = fraction_of(baseline, pair) * base["ratio"]
            state = "ok" if ratio >= floor else "REGRESSION"
            lines.append(f"  {pair}: {ratio:.3f} vs baseline {base['ratio']:.3f} (floor {floor:.3f}) {state}")
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--kind"]:
        print(machine_kind())
    elif sys.argv[1:2] == ["--kind"] and len(sys.argv) == 3:
        print(machine_kind(sys.argv[2]))
    else:
        print(__doc__)
        sys.exit(2)

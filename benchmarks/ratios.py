"""Ratio baselines: what travels between machines is the ratio of two benchmarks measured
in the same run (fused op vs the eager expression, lean step vs the authors' step), not
their times. A benchmark takes part in a pair by `extra_info` {"pair": NAME, "role":
"baseline" | "candidate"}; the pair's ratio is baseline time / candidate time (the
candidate's speed-up; higher is better), on each benchmark's minimum round (the statistic
least moved by other work on a shared machine).

A baseline file, benchmarks/baselines/<machine kind>.json:

    {"machine_kind": "cpu-2core", "statistic": "min", "fraction": 0.5, "fraction_note": "...",
     "threads": 1, "source": {"commit", "date", "machine", "runs"},
     "pairs": {NAME: {"ratio": median over runs, "spread": [min, max], "runs": N}}}

A run regresses when a pair's ratio falls below `fraction` x its baseline ratio.

    python benchmarks/ratios.py --kind    # this machine's kind
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys

STATISTIC = "min"
KIND_KEY = "l2l_fast_machine_kind"


def machine_kind(device: str = "cpu") -> str:
    """"cpu-<cores>core", or the GPU's name in short ("h200") for CUDA benchmarks."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name().lower()
        found = re.search(r"\b([a-z]+\d{2,4}[a-z]*)\b", name.replace("nvidia", ""))
        return found.group(1) if found else re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"cpu-{os.cpu_count()}core"


def pair_ratios(entries) -> dict[str, float]:
    """{pair: baseline time / candidate time} from (pair, role, time) triples; pairs missing a side are left out."""
    sides: dict[str, dict[str, float]] = {}
    for pair, role, seconds in entries:
        sides.setdefault(pair, {})[role] = seconds
    return {pair: s["baseline"] / s["candidate"] for pair, s in sides.items() if {"baseline", "candidate"} <= s.keys()}


def json_entries(results: dict):
    """(pair, role, time) of the paired benchmarks of a pytest-benchmark JSON."""
    for bench in results["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "pair" in info:
            yield info["pair"], info["role"], bench["stats"][STATISTIC]


def load_baseline(path) -> dict:
    with open(path) as handle:
        baseline = json.load(handle)
    for key in ("machine_kind", "fraction", "pairs"):
        if key not in baseline:
            raise ValueError(f"{path}: not a ratio baseline (no {key!r})")
    return baseline


def regressions(ratios: dict[str, float], baseline: dict) -> list[str]:
    """One message per pair whose ratio is below fraction x its baseline ratio."""
    fraction, source = baseline["fraction"], baseline.get("source", {})
    found = []
    for pair, ratio in sorted(ratios.items()):
        base = baseline["pairs"].get(pair)
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
            state = "ok" if ratio >= baseline["fraction"] * base["ratio"] else "REGRESSION"
            lines.append(f"  {pair}: {ratio:.3f} vs baseline {base['ratio']:.3f} "
                         f"(floor {baseline['fraction'] * base['ratio']:.3f}) {state}")
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--kind"]:
        print(machine_kind())
    elif sys.argv[1:2] == ["--kind"] and len(sys.argv) == 3:
        print(machine_kind(sys.argv[2]))
    else:
        print(__doc__)
        sys.exit(2)

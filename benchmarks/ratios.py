"""Ratio baselines: what travels between machines is the ratio of two timings measured
in the same run (fused op vs the eager expression, lean step vs the authors' step), not
their times. A paired benchmark (bench_regression.py) times its baseline and its candidate
in alternate rounds, so that a change of load falls on both; its `extra_info` holds the
pair's name and its ratio (STATISTIC): baseline time / candidate time, each side's fastest
round (the candidate's speed-up; higher is better).

A baseline file, benchmarks/baselines/<machine kind>.json (kind: CPU model and cores, e.g.
"cpu-amd-epyc-2core", or the GPU's short name), made by update_baselines.py from runs of one
clean commit:

    {"machine_kind": ..., "statistic": ..., "fraction": ..., "fraction_rule": FRACTION_RULE,
     "threads": 1, "source": {"commit", "date", "machine", "runs"},
     "pairs": {NAME: {"ratio": median over runs, "spread": [min, max], "runs": N, "fraction": F}}}

The gate (FRACTION_RULE): a pair's floor is its fraction x its baseline ratio, the fraction
set from the spread of the baseline's runs; a pair below its floor is re-measured (RETRIES
more attempts) and fails only if every attempt is below; a committed pair missing from the
run fails. A floor of F x catches any slowdown of the candidate above 1/F - 1.

    python benchmarks/ratios.py --kind    # this machine's kind
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

STATISTIC = "ratio of each side's fastest round over interleaved rounds"
KIND_KEY = "l2l_fast_machine_kind"
TREE_KEY = "l2l_fast_tree"
K, LOWEST, HIGHEST, RETRIES = 3, 0.5, 0.9, 2
FRACTION_RULE = (f"floor = fraction x baseline ratio; fraction = 1 - {K} x the largest drop below the median over "
                 f"the baseline's runs (1 - min/median), kept within [{LOWEST}, {HIGHEST}]; a pair below its floor "
                 f"is re-measured up to {RETRIES} times and fails only if every attempt is below; a committed pair "
                 f"missing from the run fails")


def fraction_from_spread(ratio: float, lowest_run: float) -> float:
    """1 - K x the largest drop below the median, within [LOWEST, HIGHEST]: K times the noise
    seen passes; never less than half the baseline is accepted, never a floor within 10% of it."""
    drop = 1 - lowest_run / ratio
    return round(min(HIGHEST, max(LOWEST, 1 - K * drop)), 2)


def caught_slowdown(fraction: float) -> float:
    """The slowdown of the candidate above which a floor of fraction x is crossed: 1/fraction - 1."""
    return 1 / fraction - 1


def cpu_model(name: str | None = None) -> str:
    """The CPU's vendor and family in short, from its model name (this machine's by default):
    "Intel(R) Xeon(R) Processor @ 2.80GHz" -> "intel-xeon", "AMD EPYC 7B13" -> "amd-epyc"."""
    if name is None:
        name = platform.processor()
        try:
            with open("/proc/cpuinfo") as handle:
                name = next(line.split(":", 1)[1] for line in handle if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    words = re.findall(r"[a-z0-9]+", re.sub(r"\((r|tm)\)", " ", name.lower()))
    return "-".join(words[:2]) or platform.machine().lower() or "unknown"


def machine_kind(device: str = "cpu") -> str:
    """"cpu-<model>-<cores>core" ("cpu-amd-epyc-2core"), or the GPU's name in short ("h200")."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name().lower()
        found = re.search(r"\b([a-z]+\d{2,4}[a-z]*)\b", name.replace("nvidia", ""))
        return found.group(1) if found else re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"cpu-{cpu_model()}-{os.cpu_count()}core"


def missing_extension() -> str | None:
    """Why the regression set cannot run here, or None: without l2l_fast._C every operator is the
    plain-PyTorch reference, and the gate would time that and report a false regression."""
    import l2l_fast

    if l2l_fast.backends()["cpu"]:
        return None
    return (f"the regression set needs l2l_fast's compiled extension, and l2l_fast imported from "
            f"{Path(l2l_fast.__file__).parent} has no l2l_fast._C (a source checkout first on sys.path, e.g. "
            f"`python -m pytest` from the repository root, imports it from there): every operator would run the "
            f"plain-PyTorch reference. Build it (pip install --no-build-isolation -e .) or run the environment's "
            f"`pytest` script")


def tree_state(path=Path(__file__).parent) -> dict:
    """The commit and the modified tracked files of the checkout at `path` (untracked files do not count)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=path).stdout
    modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or "?", "modified": modified}


def round_ratio(baseline_times, candidate_times) -> float:
    """Baseline time / candidate time over rounds taken in pairs, each side's fastest round (STATISTIC).
    Not a mean or a median: the eager sides allocate large temporaries, and their rounds alternate
    between two levels whose mix changes from process to process (eager encoder_distance: fastest
    rounds 2.3-2.9 ms, medians 5-10 ms over eight processes on one idle machine), so a mean's ratio
    moved 3.6-5.6x where the fastest rounds' moved 2.6-2.9x; time that another job or the
    allocator adds never makes a round faster."""
    if not candidate_times or len(baseline_times) != len(candidate_times):
        raise ValueError(f"one baseline time per candidate round expected, got {len(baseline_times)} "
                         f"and {len(candidate_times)}")
    return min(baseline_times) / min(candidate_times)


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


def floor(baseline: dict | None, pair: str) -> float | None:
    """fraction x the pair's baseline ratio; None without a baseline for the pair."""
    if baseline is None or pair not in baseline["pairs"]:
        return None
    return fraction_of(baseline, pair) * baseline["pairs"][pair]["ratio"]


def regressions(ratios: dict[str, float], baseline: dict) -> list[str]:
    """One message per pair whose ratio is below its floor, and per committed pair not run."""
    source = baseline.get("source", {})
    found = []
    for pair in sorted(set(ratios) | set(baseline["pairs"])):
        base, ratio = baseline["pairs"].get(pair), ratios.get(pair)
        if base is None:
            continue
        if ratio is None:
            found.append(f"{pair}: missing from this run (committed in {baseline['machine_kind']}'s baseline; "
                         f"every committed pair must run)")
        elif ratio < floor(baseline, pair):
            fraction = fraction_of(baseline, pair)
            low, high = base.get("spread", (base["ratio"], base["ratio"]))
            found.append(f"{pair}: ratio {ratio:.3f} is below {fraction} x baseline {base['ratio']:.3f} "
                         f"(= {fraction * base['ratio']:.3f}; baseline spread {low:.3f}-{high:.3f} over "
                         f"{base.get('runs', '?')} runs, commit {source.get('commit', '?')}, "
                         f"{baseline['machine_kind']})")
    return found


def report(ratios: dict[str, float], baseline: dict, attempts: dict[str, list] | None = None) -> list[str]:
    """A line per pair: its ratio (and every attempt), its baseline, the floor and what it catches."""
    lines = []
    for pair in sorted(set(ratios) | set(baseline["pairs"])):
        base, ratio = baseline["pairs"].get(pair), ratios.get(pair)
        tried = (attempts or {}).get(pair, [])
        tries = f" (attempts {', '.join(f'{a:.3f}' for a in tried)})" if len(tried) > 1 else ""
        if ratio is None:
            lines.append(f"  {pair}: not run REGRESSION" if base else f"  {pair}: not run")
        elif base is None:
            lines.append(f"  {pair}: {ratio:.3f} (no baseline)")
        else:
            fraction = fraction_of(baseline, pair)
            state = "ok" if ratio >= floor(baseline, pair) else "REGRESSION"
            lines.append(f"  {pair}: {ratio:.3f}{tries} vs baseline {base['ratio']:.3f} (floor {fraction} x = "
                         f"{floor(baseline, pair):.3f}, catches a slowdown above {caught_slowdown(fraction):.0%}) "
                         f"{state}")
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--kind"]:
        print(machine_kind())
    elif sys.argv[1:2] == ["--kind"] and len(sys.argv) == 3:
        print(machine_kind(sys.argv[2]))
    else:
        print(__doc__)
        sys.exit(2)

"""Refresh a ratio baseline (benchmarks/baselines/<machine kind>.json) from one or more
pytest-benchmark JSONs of the regression set, run on a machine of that kind:

    for i in 1 2 3; do pytest benchmarks -m regression --benchmark-json /tmp/reg$i.json; done
    python benchmarks/update_baselines.py /tmp/reg1.json /tmp/reg2.json /tmp/reg3.json

Each pair's ratio is the median over the files, its spread their min and max. Refused (exit
status 2): results from another machine kind, from a tree with modified tracked files (untracked
ones do not count), from several commits, or timed with the test-only slowdown switch on
(bench_regression.SLOWDOWN_ENV). `--fraction` sets the gate; by default each pair's fraction
follows from its spread (ratios.FRACTION_RULE).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ratios  # noqa: E402

from l2l_fast.training.files import atomic_write  # noqa: E402

BASELINES = Path(__file__).resolve().parent / "baselines"


def read_results(paths) -> tuple[str, list[dict]]:
    kinds, commits, runs = set(), set(), []
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        info = data.get("machine_info", {})
        kind, tree = info.get(ratios.KIND_KEY), info.get(ratios.TREE_KEY)
        if kind is None or tree is None:
            raise SystemExit(f"{path}: no {ratios.KIND_KEY} or {ratios.TREE_KEY} in machine_info "
                             f"(not written by benchmarks/conftest.py)")
        if tree.get("modified"):
            raise SystemExit(f"{path}: measured on a tree with modified tracked files ({', '.join(tree['modified'])}): "
                             f"commit, then measure")
        slowed = [b["extra_info"]["pair"] for b in data["benchmarks"] if b.get("extra_info", {}).get("slowdown")]
        if slowed:
            raise SystemExit(f"{path}: timed with the test-only slowdown switch on ({', '.join(slowed)})")
        kinds.add(kind)
        commits.add(tree.get("commit"))
        runs.append(data)
    if len(kinds) > 1:
        raise SystemExit(f"results from several machine kinds: {sorted(kinds)}")
    if len(commits) > 1:
        raise SystemExit(f"results from several commits: {sorted(map(str, commits))}")
    return kinds.pop(), runs


def build(kind: str, runs: list[dict], fraction: float | None) -> dict:
    measured = [ratios.json_ratios(run) for run in runs]
    names = sorted(set().union(*measured))
    pairs = {}
    for name in names:
        values = [m[name] for m in measured if name in m]
        pairs[name] = dict(ratio=statistics.median(values), spread=[min(values), max(values)], runs=len(values))
        pairs[name]["fraction"] = fraction if fraction is not None else ratios.fraction_from_spread(
            pairs[name]["ratio"], pairs[name]["spread"][0])
    last = runs[-1]
    info = last.get("machine_info", {})
    return dict(
        machine_kind=kind, statistic=ratios.STATISTIC, fraction=ratios.LOWEST if fraction is None else fraction,
        fraction_rule=ratios.FRACTION_RULE if fraction is None else "given with --fraction",
        threads=next((b["extra_info"].get("threads") for b in last["benchmarks"] if "pair" in b.get("extra_info", {})),
                     None),
        source=dict(commit=info[ratios.TREE_KEY]["commit"][:12],
                    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    machine=dict(cpu=info.get("cpu", {}).get("brand_raw"), cores=info.get("cpu", {}).get("count"),
                                 node=info.get("node")),
                    runs=len(runs)),
        pairs=pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON files of the regression set")
    parser.add_argument("--baseline", help="the baseline to write (default: benchmarks/baselines/<kind>.json)")
    parser.add_argument("--fraction", type=float, help="the gate: fail below fraction x baseline ratio")
    args = parser.parse_args(argv)
    try:
        kind, runs = read_results(args.results)
    except SystemExit as error:
        print(f"update_baselines: {error}", file=sys.stderr)
        return 2
    path = Path(args.baseline) if args.baseline else BASELINES / f"{kind}.json"
    previous = ratios.load_baseline(path) if path.exists() else None
    expected = previous["machine_kind"] if previous else path.stem
    if kind != expected:
        print(f"update_baselines: {path} is the {expected!r} baseline; these results come from a {kind!r} "
              f"machine: refusing", file=sys.stderr)
        return 2
    if args.fraction is not None and not 0 < args.fraction < 1:
        print(f"update_baselines: --fraction must be in (0, 1), got {args.fraction}", file=sys.stderr)
        return 2
    baseline = build(kind, runs, args.fraction)

    def write(tmp):
        with open(tmp, "w") as handle:
            json.dump(baseline, handle, indent=2)
            handle.write("\n")

    atomic_write(path, write)
    print(f"wrote {path}")
    for name, pair in baseline["pairs"].items():
        print(f"  {name}: {pair['ratio']:.3f} (spread {pair['spread'][0]:.3f}-{pair['spread'][1]:.3f}, "
              f"{pair['runs']} runs), fails below {pair['fraction']} x (catches a slowdown above "
              f"{ratios.caught_slowdown(pair['fraction']):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

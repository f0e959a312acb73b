"""Print a pytest-benchmark JSON as a table of times, GB/s and ratios against the
eager reference and torch.compile(reference) measured in the same run."""
import argparse
import json
import re
from collections import defaultdict


def main(path: str, bandwidth_path: str = None) -> None:
    with open(path) as handle:
        data = json.load(handle)
    copy = None
    if bandwidth_path:
        with open(bandwidth_path) as handle:
            copy = json.load(handle)["copy_GBps"]
        print(f"device-to-device copy bandwidth: {copy:.0f} GB/s")
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        param = re.search(r"\[(.*)\]", bench["name"]).group(1)
        provider = re.match(r"[a-z_]+-(?:cpu|cuda)", param)
        groups[bench["group"]][provider.group(0) if provider else param] = bench
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}")
    for group, by_provider in groups.items():
        print(f"\n{group}")
        for provider, bench in sorted(by_provider.items()):
            device = "cuda" if provider.endswith("-cuda") else "cpu"
            mean = bench["stats"]["mean"]
            line = f"  {provider:<26}{mean * 1e3:>10.2f} ms"
            nbytes = bench.get("extra_info", {}).get("bytes")
            if nbytes:
                line += f"{nbytes / mean / 1e9:>9.1f} GB/s"
                if copy and device == "cuda":
                    line += f" ({100 * nbytes / mean / 1e9 / copy:.0f}% of copy)"
            bases = [f"reference-{device}", f"compiled_reference-{device}"]
            bases += [p for p in by_provider if p.endswith("-authors")]
            for base in bases:
                other = by_provider.get(base)
                if other and other is not bench:
                    line += f"   {other['stats']['mean'] / mean:>5.2f}x vs {base}"
            print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", help="pytest-benchmark JSON")
    parser.add_argument("--bandwidth", help="copy_bandwidth.py's JSON, for % of the card's copy bandwidth")
    args = parser.parse_args()
    main(args.results, args.bandwidth)

"""Print a pytest-benchmark JSON as a table of times, GB/s and ratios against the
eager reference and torch.compile(reference) measured in the same run."""
import json
import re
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as handle:
        data = json.load(handle)
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        provider = re.search(r"\[([a-z_]+-(?:cpu|cuda))", bench["name"]).group(1)
        groups[bench["group"]][provider] = bench
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}")
    for group, by_provider in groups.items():
        print(f"\n{group}")
        for provider, bench in sorted(by_provider.items()):
            device = provider.split("-")[1]
            mean = bench["stats"]["mean"]
            line = f"  {provider:<26}{mean * 1e3:>10.2f} ms"
            nbytes = bench.get("extra_info", {}).get("bytes")
            if nbytes:
                line += f"{nbytes / mean / 1e9:>9.1f} GB/s"
            for base in ("reference", "compiled_reference"):
                other = by_provider.get(f"{base}-{device}")
                if other and other is not bench:
                    line += f"   {other['stats']['mean'] / mean:>5.2f}x vs {base}"
            print(line)


if __name__ == "__main__":
    main(sys.argv[1])

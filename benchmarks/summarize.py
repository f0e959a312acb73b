"""Print a pytest-benchmark JSON as a table of times, GB/s and ratios against the
eager expression (the user's alternative), the reference (the tests' oracle, slow on
purpose) and torch.compile(reference) measured in the same run; for whole
steps, images/s, peak memory against the authors' recipe and the share of the
card's dense bf16 matrix throughput."""
import argparse
import json
import re
from collections import defaultdict

# Dense bf16 tensor-core throughput (FLOP/s) from the vendors' data sheets.
BF16_PEAK = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))


def bf16_peak(device: str):
    return next((flops for name, flops in BF16_PEAK if name in device), None)


def step_columns(bench: dict, authors: dict) -> str:
    info, mean = bench.get("extra_info", {}), bench["stats"]["mean"]
    line = f"{info['images_per_s']:>9.1f} img/s" if "images_per_s" in info else ""
    if info.get("flops"):
        line += f"{info['flops'] / info['images'] / 1e9:>8.1f} GFLOP/img"
    if "peak_memory_GB" in info:
        line += f"{info['peak_memory_GB']:>7.1f} GB"
        if authors and authors is not bench:
            line += f" ({info['peak_memory_GB'] / authors['extra_info']['peak_memory_GB']:.2f}x authors')"
    peak = bf16_peak(info.get("device", ""))
    if info.get("flops") and peak:
        line += f"{info['flops'] / mean / 1e12:>7.0f} TFLOP/s ({100 * info['flops'] / mean / peak:.0f}% of bf16 peak)"
    return line


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
            label = f"{provider} (oracle)" if provider.startswith("reference") else provider
            line = f"  {label:<36}{mean * 1e3:>10.2f} ms"
            nbytes = bench.get("extra_info", {}).get("bytes")
            if nbytes:
                line += f"{nbytes / mean / 1e9:>9.1f} GB/s"
                if copy and device == "cuda":
                    line += f" ({100 * nbytes / mean / 1e9 / copy:.0f}% of copy)"
            authors = next((b for p, b in by_provider.items() if p.endswith("-authors")), None)
            line += step_columns(bench, authors)
            bases = [f"eager-{device}", f"reference-{device}", f"compiled_reference-{device}"]
            bases += [p for p in by_provider if p.endswith("-authors")]
            for base in bases:
                other = by_provider.get(base)
                if other and other is not bench:
                    name = f"{base} (oracle)" if base.startswith("reference") else base
                    line += f"   {other['stats']['mean'] / mean:>5.2f}x vs {name}"
            print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", help="pytest-benchmark JSON")
    parser.add_argument("--bandwidth", help="copy_bandwidth.py's JSON, for % of the card's copy bandwidth")
    args = parser.parse_args()
    main(args.results, args.bandwidth)

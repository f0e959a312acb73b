"""Benchmarks (pytest-benchmark), never part of the test run:

    pytest benchmarks --ignore benchmarks/bench_unlearning_step.py --benchmark-json benchmarks/results/cpu_ops.json
    pytest benchmarks/bench_unlearning_step.py --benchmark-json benchmarks/results/cpu_steps.json
    python benchmarks/summarize.py benchmarks/results/cpu_steps.json
"""
import os

if os.environ.get("L2L_FAST_BENCH_INTERPRET") == "1":
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import l2l_fast  # noqa: E402


QUICK = os.environ.get("L2L_FAST_BENCH_QUICK") == "1"


def providers(compiled: bool = True):
    """(provider, device) pairs to measure on this machine."""
    found = [("reference", "cpu")] + ([("compiled_reference", "cpu")] if compiled else [])
    if l2l_fast.backends()["cpu"]:
        found.append(("cpu", "cpu"))
    if torch.cuda.is_available():
        found += [("reference", "cuda")] + ([("compiled_reference", "cuda")] if compiled else [])
        found += [(b, "cuda") for b in ("cuda", "triton") if l2l_fast.backends()[b]]
    return [pytest.param(p, d, id=f"{p}-{d}") for p, d in providers_filter(found)]


def providers_filter(found):
    only = os.environ.get("L2L_FAST_BENCH_DEVICE")
    return [(p, d) for p, d in found if only is None or d == only]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """In each group with an "eager" provider, records every other benchmark's median
    time over eager's on the same device as extra_info["time_vs_eager"]."""
    def key(bench):
        params = bench.get("params") or {}
        return bench["group"], params.get("device"), params.get("provider")

    eager = {key(b)[:2]: b["stats"]["median"] for b in output_json["benchmarks"] if key(b)[2] == "eager"}
    for bench in output_json["benchmarks"]:
        group, device, provider = key(bench)
        if provider != "eager" and (group, device) in eager:
            bench["extra_info"]["time_vs_eager"] = bench["stats"]["median"] / eager[group, device]

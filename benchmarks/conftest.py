"""Benchmarks (pytest-benchmark), never part of the test run:

    pytest benchmarks --ignore benchmarks/bench_unlearning_step.py --benchmark-json benchmarks/results/ops/cpu_ops.json
    python benchmarks/measure_steps.py --repeats 3 --out benchmarks/results/steps/cpu_steps.json
    pytest benchmarks -m regression --ratio-baseline benchmarks/baselines/cpu-amd-epyc-2core.json
"""
import os
import time

if os.environ.get("L2L_FAST_BENCH_INTERPRET") == "1":
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import l2l_fast  # noqa: E402
import ratios  # noqa: E402


QUICK = os.environ.get("L2L_FAST_BENCH_QUICK") == "1"
BENCH_DEVICE = os.environ.get("L2L_FAST_BENCH_DEVICE", "cpu")
_PAIRS = pytest.StashKey[dict]()
_BASELINE = pytest.StashKey[object]()
_REGRESSIONS = pytest.StashKey[list]()
_ATTEMPTS = pytest.StashKey[dict]()


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


def clock(device: str):
    """The process's CPU time on a CPU with one torch thread (time spent waiting for a core that
    another job holds is not counted: the steadiest on a shared machine); wall time otherwise."""
    return time.process_time if device == "cpu" and torch.get_num_threads() == 1 else time.perf_counter


def timed(run, device: str) -> float:
    """Seconds of one `run()` by clock(device), the device synchronised."""
    now = clock(device)
    start = now()
    run()
    sync(device)
    return now() - start


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


# The regression mode: `pytest benchmarks -m regression --ratio-baseline benchmarks/baselines/<kind>.json`
# runs the quick set (bench_regression.py), computes each pair's ratio from this run (ratios.py)
# and fails the session naming every pair below its floor and every committed pair not run.


def pytest_addoption(parser):
    group = parser.getgroup("ratio baselines")
    group.addoption("--ratio-baseline", metavar="JSON",
                    help="compare the pairs' ratios with this baseline (benchmarks/baselines/<machine kind>.json)")


def pytest_configure(config):
    config.addinivalue_line("markers", "regression: the quick set of paired benchmarks (ratio baselines)")
    config.stash[_PAIRS], config.stash[_ATTEMPTS] = {}, {}
    path = config.getoption("--ratio-baseline")
    config.stash[_BASELINE] = None
    if (path or "regression" in (config.option.markexpr or "")) and ratios.missing_extension():
        raise pytest.UsageError(f"refusing to run: {ratios.missing_extension()}")
    if path:
        try:
            baseline = ratios.load_baseline(path)
        except (OSError, ValueError) as error:
            raise pytest.UsageError(f"--ratio-baseline: {error}") from error
        kind = ratios.machine_kind(BENCH_DEVICE)
        if baseline["machine_kind"] != kind:
            raise pytest.UsageError(f"--ratio-baseline {path} is for {baseline['machine_kind']!r} machines; this "
                                    f"one is {kind!r} (make its own with benchmarks/update_baselines.py)")
        config.stash[_BASELINE] = baseline


@pytest.fixture
def ratio_floor(request):
    """pair -> its floor in --ratio-baseline (None without one): a pair below it is re-measured."""
    return lambda pair: ratios.floor(request.config.stash.get(_BASELINE, None), pair)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """After a paired benchmark, its pair's ratio for the session's comparison."""
    result = yield
    bench = getattr(item, "funcargs", {}).get("benchmark")
    if bench is not None and "ratio" in bench.extra_info:
        item.config.stash[_PAIRS][bench.extra_info["pair"]] = bench.extra_info["ratio"]
        item.config.stash[_ATTEMPTS][bench.extra_info["pair"]] = bench.extra_info.get("attempts", [])
    return result


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info[ratios.KIND_KEY] = ratios.machine_kind(BENCH_DEVICE)
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info[ratios.TREE_KEY] = ratios.tree_state()


def pytest_sessionfinish(session, exitstatus):
    baseline = session.config.stash.get(_BASELINE, None)
    if baseline is None:
        return
    found = ratios.regressions(session.config.stash.get(_PAIRS, {}), baseline)
    session.config.stash[_REGRESSIONS] = found
    if found and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    measured = config.stash.get(_PAIRS, {})
    baseline = config.stash.get(_BASELINE, None)
    if not measured and baseline is None:
        return
    tree = ratios.tree_state()
    terminalreporter.section("ratios (baseline time / candidate time)")
    terminalreporter.write_line(f"  {ratios.machine_kind(BENCH_DEVICE)}, commit {tree['commit'][:12]}, "
                                f"{len(tree['modified'])} modified tracked files, load {os.getloadavg()}")
    if baseline is None:
        for pair, ratio in sorted(measured.items()):
            terminalreporter.write_line(f"  {pair}: {ratio:.3f}")
        return
    for line in ratios.report(measured, baseline, config.stash.get(_ATTEMPTS, {})):
        terminalreporter.write_line(line)
    for message in config.stash.get(_REGRESSIONS, []):
        terminalreporter.write_line(f"REGRESSION {message}", red=True)

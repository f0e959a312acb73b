"""Ratio baselines (benchmarks/ratios.py, benchmarks/update_baselines.py, the gate in
benchmarks/conftest.py): a pair's ratio from interleaved rounds, the floor rule, the gate's
messages (a pair below its floor, a committed pair not run), machine kinds by CPU model, and a
baseline made only from clean runs of one commit of its own machine kind."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import ratios  # noqa: E402
import update_baselines  # noqa: E402


def test_round_ratio_is_the_ratio_of_each_sides_fastest_round():
    baseline = [6.0, 4.0, 6.0, 4.5, 40.0]  # alternating levels and one round slowed by another job
    candidate = [2.5, 3.0, 2.0, 3.0, 2.2]
    assert ratios.round_ratio(baseline, candidate) == pytest.approx(4.0 / 2.0)
    with pytest.raises(ValueError, match="one baseline time per candidate round"):
        ratios.round_ratio([1.0], [1.0, 2.0])


def test_floor_rule_is_three_times_the_largest_drop_within_half_and_nine_tenths():
    assert ratios.fraction_from_spread(1.0, 0.95) == 0.85  # a 5% drop: 1 - 3 x 0.05
    assert ratios.fraction_from_spread(1.0, 0.99) == 0.9  # never within 10% of the baseline
    assert ratios.fraction_from_spread(5.33, 3.05) == 0.5  # a 43% drop: never below half
    # a floor of 0.85 x catches a 25% slowdown (ratio / 1.25 = 0.8 x), 0.5 x only above 100%
    assert 1 / 1.25 < 0.85 and ratios.caught_slowdown(0.85) == pytest.approx(0.1765, abs=1e-4)
    assert ratios.caught_slowdown(0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("name, model", [("Intel(R) Xeon(R) Processor @ 2.80GHz", "intel-xeon"),
                                         ("AMD EPYC 7B13", "amd-epyc"), ("AMD EPYC", "amd-epyc")])
def test_machine_kind_names_the_cpu_model_and_cores(name, model):
    assert ratios.cpu_model(name) == model
    assert ratios.machine_kind() == f"cpu-{ratios.cpu_model()}-{os.cpu_count()}core"


BASELINE = {"machine_kind": "cpu-amd-epyc-2core", "fraction": 0.5, "source": {"commit": "abc"},
            "pairs": {"noise fused/eager": {"ratio": 2.0, "spread": [1.8, 2.2], "runs": 3, "fraction": 0.85},
                      "step lean/authors": {"ratio": 1.5, "spread": [1.4, 1.6], "runs": 3}}}


def test_a_ratio_below_its_floor_is_named_with_its_baseline():
    found = ratios.regressions({"noise fused/eager": 1.6, "step lean/authors": 0.76}, BASELINE)
    assert len(found) == 1
    assert found[0].startswith("noise fused/eager: ratio 1.600 is below 0.85 x baseline 2.000 (= 1.700")
    # the file's fraction (0.5) for a pair without its own: 0.74 < 0.75 fails, 0.76 passes
    assert ratios.regressions({"noise fused/eager": 1.8, "step lean/authors": 0.74}, BASELINE)[0].startswith(
        "step lean/authors: ratio 0.740")
    assert ratios.regressions({"noise fused/eager": 1.8, "step lean/authors": 1.5, "new pair": 0.01}, BASELINE) == []


def test_a_committed_pair_missing_from_the_run_fails():
    found = ratios.regressions({"noise fused/eager": 2.0}, BASELINE)
    assert found == ["step lean/authors: missing from this run (committed in cpu-amd-epyc-2core's baseline; "
                     "every committed pair must run)"]
    lines = ratios.report({"noise fused/eager": 1.9}, BASELINE, {"noise fused/eager": [1.6, 1.9]})
    assert "1.900 (attempts 1.600, 1.900) vs baseline 2.000 (floor 0.85 x = 1.700" in lines[0] and "ok" in lines[0]
    assert lines[1] == "  step lean/authors: not run REGRESSION"


def _results(tmp_path, name, values, kind="cpu-amd-epyc-2core", commit="0123456789abcdef", modified=(),
             slowdown=0.0):
    benchmarks = [{"extra_info": {"pair": pair, "ratio": ratio, "threads": 1, "slowdown": slowdown}, "stats": {}}
                  for pair, ratio in values.items()]
    path = tmp_path / name
    info = {ratios.KIND_KEY: kind, ratios.TREE_KEY: {"commit": commit, "modified": list(modified)}}
    path.write_text(json.dumps({"machine_info": info, "benchmarks": benchmarks}))
    return str(path)


def test_update_writes_median_spread_and_the_floor_rules_fraction(tmp_path):
    runs = [_results(tmp_path, f"r{i}.json", {"a": a, "b": b})
            for i, (a, b) in enumerate([(2.0, 1.0), (1.9, 0.5), (2.1, 1.0)])]
    out = tmp_path / "cpu-amd-epyc-2core.json"
    assert update_baselines.main(runs + ["--baseline", str(out)]) == 0
    written = ratios.load_baseline(out)
    assert written["machine_kind"] == "cpu-amd-epyc-2core" and written["threads"] == 1
    assert written["source"]["commit"] == "0123456789ab" and written["fraction_rule"] == ratios.FRACTION_RULE
    a, b = written["pairs"]["a"], written["pairs"]["b"]
    assert (a["ratio"], a["spread"], a["runs"]) == (2.0, [1.9, 2.1], 3)
    assert a["fraction"] == 0.85  # a 5% drop: 1 - 3 x 0.05
    assert b["fraction"] == 0.5  # a 50% drop: the lowest fraction


@pytest.mark.parametrize("bad, message", [
    (dict(kind="cpu-intel-xeon-2core"), "is the 'cpu-amd-epyc-2core' baseline"),
    (dict(modified=["benchmarks/ratios.py"]), "modified tracked files (benchmarks/ratios.py)"),
    (dict(commit="fedcba9876543210"), "several commits"),
    (dict(slowdown=0.25), "slowdown switch on"),
])
def test_update_refuses_other_kinds_dirty_trees_mixed_commits_and_slowed_runs(tmp_path, capsys, bad, message):
    out = tmp_path / "cpu-amd-epyc-2core.json"
    assert update_baselines.main([_results(tmp_path, "r.json", {"a": 2.0}), "--baseline", str(out)]) == 0
    runs = [_results(tmp_path, "r.json", {"a": 2.0})] if "commit" in bad else []
    runs.append(_results(tmp_path, "bad.json", {"a": 9.0}, **bad))
    assert update_baselines.main(runs + ["--baseline", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert ratios.load_baseline(out)["pairs"]["a"]["ratio"] == 2.0


def test_tree_state_counts_modified_tracked_files_not_untracked_ones(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    git("init", "-q")
    (tmp_path / "tracked.py").write_text("a = 1\n")
    git("add", "tracked.py")
    git("commit", "-qm", "one")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x").write_text("untracked")
    clean = ratios.tree_state(tmp_path)
    assert clean["modified"] == [] and len(clean["commit"]) == 40
    (tmp_path / "tracked.py").write_text("a = 2\n")
    assert ratios.tree_state(tmp_path)["modified"] == ["tracked.py"]


# a fresh source checkout: l2l_fast from the working directory, no editable install to find _C elsewhere
SOURCE_CHECKOUT_PYTEST = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
import pytest
sys.exit(pytest.main(sys.argv[1:]))"""


def test_the_gate_refuses_to_run_without_the_compiled_extension(tmp_path):
    """A source checkout first on sys.path (no _C*.so): the gate refuses, naming why, before timing anything."""
    shutil.copytree(ROOT / "l2l_fast", tmp_path / "l2l_fast", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", SOURCE_CHECKOUT_PYTEST, str(ROOT / "benchmarks"), "-m", "regression",
                           "--ratio-baseline", str(tmp_path / "any.json"), "-p", "no:cacheprovider", "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "refusing to run: the regression set needs l2l_fast's compiled extension" in done.stderr
    assert f"l2l_fast imported from {tmp_path / 'l2l_fast'} has no l2l_fast._C" in done.stderr

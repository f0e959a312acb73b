"""Ratio baselines (benchmarks/ratios.py, benchmarks/update_baselines.py): a pair's ratio
from interleaved rounds, the gate's messages, and a baseline refreshed only from results of
its own machine kind."""
import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ratios  # noqa: E402
import update_baselines  # noqa: E402


def test_round_ratio_is_the_median_of_per_round_ratios():
    baseline, candidate = [4.0, 9.0, 3.0], [2.0, 3.0, 3.0]
    assert ratios.round_ratio(baseline, candidate) == statistics.median([2.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="one baseline time per candidate round"):
        ratios.round_ratio([1.0], [1.0, 2.0])


BASELINE = {"machine_kind": "cpu-2core", "fraction": 0.3, "source": {"commit": "abc"},
            "pairs": {"noise fused/eager": {"ratio": 2.0, "spread": [1.8, 2.2], "runs": 3, "fraction": 0.5},
                      "step lean/authors": {"ratio": 1.5, "spread": [1.4, 1.6], "runs": 3}}}


def test_a_ratio_below_its_floor_is_named_with_its_baseline():
    found = ratios.regressions({"noise fused/eager": 0.9, "step lean/authors": 0.46}, BASELINE)
    assert len(found) == 1
    assert found[0].startswith("noise fused/eager: ratio 0.900 is below 0.5 x baseline 2.000 (= 1.000")
    # the file's fraction (0.3) for a pair without its own: 0.44 < 0.45 fails, 0.46 passes
    assert ratios.regressions({"step lean/authors": 0.44}, BASELINE)[0].startswith("step lean/authors")
    assert ratios.regressions({"noise fused/eager": 1.0, "new pair": 0.01}, BASELINE) == []


def _results(tmp_path, name, kind, values):
    benchmarks = [{"extra_info": {"pair": pair, "ratio": ratio, "threads": 1}, "stats": {}}
                  for pair, ratio in values.items()]
    path = tmp_path / name
    path.write_text(json.dumps({"machine_info": {ratios.KIND_KEY: kind}, "commit_info": {"id": "0123456789abcdef"},
                                "benchmarks": benchmarks}))
    return str(path)


def test_update_writes_median_spread_and_fraction_from_the_spread(tmp_path):
    runs = [_results(tmp_path, f"r{i}.json", "cpu-2core", {"a": a, "b": b})
            for i, (a, b) in enumerate([(2.0, 1.0), (1.9, 0.5), (2.1, 1.0)])]
    out = tmp_path / "cpu-2core.json"
    assert update_baselines.main(runs + ["--baseline", str(out)]) == 0
    written = ratios.load_baseline(out)
    assert written["machine_kind"] == "cpu-2core" and written["threads"] == 1
    a, b = written["pairs"]["a"], written["pairs"]["b"]
    assert (a["ratio"], a["spread"], a["runs"]) == (2.0, [1.9, 2.1], 3)
    assert a["fraction"] == 0.5  # a 5% drop: 1 - 3 x 0.05 = 0.85, kept at the highest fraction
    assert b["fraction"] == 0.3  # a 50% drop: the lowest fraction


def test_update_refuses_results_of_another_machine_kind(tmp_path, capsys):
    out = tmp_path / "cpu-2core.json"
    assert update_baselines.main([_results(tmp_path, "r.json", "cpu-2core", {"a": 2.0}), "--baseline", str(out)]) == 0
    gpu = _results(tmp_path, "g.json", "h200", {"a": 9.0})
    assert update_baselines.main([gpu, "--baseline", str(out)]) == 2
    assert "refusing" in capsys.readouterr().err
    assert ratios.load_baseline(out)["pairs"]["a"]["ratio"] == 2.0

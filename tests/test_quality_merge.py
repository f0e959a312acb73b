"""benchmarks/studies/quality.py --merge: tables run as one process per mask, then merged, equal the tables of
one run over both masks; folders without results, made with other settings, holding an ablation or holding
the same table are refused."""
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "studies"))
import quality  # noqa: E402

TINY = ["--steps", "2", "--batch-size", "4", "--seeds", "0", "--methods", "Ours", "--test-per-class", "10",
        "--tsne-points", "20", "--no-ablation", "--threads", "1"]


def run_quality(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["quality.py", *args])
    quality.main()


def rows(results):
    """Each table's (method, metrics) rows, less the wall time of the unlearning."""
    return {t["name"]: [(r["method"], {k: v for k, v in r["metrics"].items() if k != "unlearn_seconds"})
                        for r in t["rows"]] for t in results["tables"]}


def test_tables_run_a_mask_per_process_and_merged_equal_one_run(tmp_path, monkeypatch):
    for mask in ("inpaint:3", "outpaint:3"):
        run_quality(monkeypatch, *TINY, "--masks", mask, "--out", str(tmp_path / mask.replace(":", "_")))
    parts = [str(tmp_path / "inpaint_3"), str(tmp_path / "outpaint_3")]
    run_quality(monkeypatch, "--merge", *parts, "--out", str(tmp_path / "merged"))
    run_quality(monkeypatch, *TINY, "--out", str(tmp_path / "whole"))

    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert list(rows(merged)) == ["inpaint:3", "outpaint:3"]
    assert rows(merged) == rows(whole)
    assert merged["settings"] == whole["settings"]
    assert sum(note.startswith("model:") for note in merged["notes"]) == 1  # notes the parts share, once
    assert sum("rebuilt by" in note for note in merged["notes"]) == 2
    for table in merged["tables"]:
        for key in ("grid", "curves", "tsne"):
            assert (tmp_path / "merged" / table[key]).is_file()
    assert "outpaint:3" in (tmp_path / "merged" / "report.md").read_text()

    with pytest.raises(SystemExit, match="no results.json in"):
        run_quality(monkeypatch, "--merge", parts[0], str(tmp_path / "nowhere"), "--out", str(tmp_path / "lost"))
    with pytest.raises(SystemExit, match="in more than one"):
        run_quality(monkeypatch, "--merge", parts[0], parts[0], "--out", str(tmp_path / "twice"))
    ablated = shutil.copytree(tmp_path / "outpaint_3", tmp_path / "ablated")
    results = json.loads((ablated / "results.json").read_text())
    (ablated / "results.json").write_text(json.dumps({**results, "ablation": {"name": "alpha ablation", "rows": []}}))
    with pytest.raises(SystemExit, match="holds an ablation"):
        run_quality(monkeypatch, "--merge", parts[0], str(ablated), "--out", str(tmp_path / "with_ablation"))
    other = json.loads((tmp_path / "outpaint_3" / "results.json").read_text())
    other["settings"]["lr"] = 2 * other["settings"]["lr"]
    (tmp_path / "outpaint_3" / "results.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="other settings"):
        run_quality(monkeypatch, "--merge", *parts, "--out", str(tmp_path / "mixed"))

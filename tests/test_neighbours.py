import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from l2l_fast.evaluation.neighbours import flag_lines, flag_neighbours, per_class_fid
from l2l_fast.evaluation.report import write_report


def rows():
    """Original and two methods over retain classes 5, 8 and 9 (accuracy, per-class FID)."""
    return [
        {"method": "Original", "metrics": {"per_class_R": {"5": 0.87, "8": 0.95, "9": 0.90},
                                           "per_class_FID_R": {"5": 10.0, "8": 20.0, "9": 30.0}}},
        # 5: accuracy down 0.22 (flag); 8: down 0.04 (no); 9: FID 30 -> 40 = 1.33x (flag)
        {"method": "Ours (proxy retain)", "metrics": {"per_class_R": {"5": 0.65, "8": 0.91, "9": 0.92},
                                                      "per_class_FID_R": {"5": 12.0, "8": 24.0, "9": 40.0}}},
        # 5: both past the thresholds; 8: FID 20 -> 25 = 1.25x exactly (not above); 9: accuracy up
        {"method": "Ours", "metrics": {"per_class_R": {"5": 0.80, "8": 0.95, "9": 0.99},
                                       "per_class_FID_R": {"5": 13.0, "8": 25.0, "9": 30.0}}},
    ]


def test_flags_match_a_hand_computation():
    flags = flag_neighbours(rows(), acc_drop=0.05, fid_ratio=1.25)
    assert [(f["method"], f["class"]) for f in flags] == [
        ("Ours (proxy retain)", "5"), ("Ours (proxy retain)", "9"), ("Ours", "5")]
    proxy5, proxy9, ours5 = flags
    assert proxy5["reasons"] == ["accuracy 0.87 -> 0.65"]
    assert proxy9["reasons"] == ["FID 30.0 -> 40.0 (1.33x)"]
    assert ours5["reasons"] == ["accuracy 0.87 -> 0.80", "FID 10.0 -> 13.0 (1.30x)"]
    assert (proxy5["acc_before"], proxy5["acc_after"]) == (0.87, 0.65)
    assert (proxy9["fid_before"], proxy9["fid_after"]) == (30.0, 40.0)


def test_thresholds_change_the_flags():
    # a looser accuracy threshold (0.1) keeps only the proxy's sandal drop (0.22) among accuracy moves
    flags = flag_neighbours(rows(), acc_drop=0.1, fid_ratio=10.0)
    assert [(f["method"], f["class"]) for f in flags] == [("Ours (proxy retain)", "5")]
    # a tighter FID ratio catches class 8 of both methods (1.2x and 1.25x)
    flags = flag_neighbours(rows(), acc_drop=1.0, fid_ratio=1.1)
    assert {(f["method"], f["class"]) for f in flags} == {
        ("Ours (proxy retain)", "8"), ("Ours (proxy retain)", "9"), ("Ours", "5"), ("Ours", "8"),
        ("Ours (proxy retain)", "5")}


def test_rows_without_per_class_fid_flag_on_accuracy_only():
    table = rows()
    for row in table:
        del row["metrics"]["per_class_FID_R"]
    flags = flag_neighbours(table)
    assert [(f["method"], f["class"], f["fid_after"]) for f in flags] == [
        ("Ours (proxy retain)", "5", None), ("Ours", "5", None)]


def test_no_baseline_no_flags_and_bad_thresholds():
    assert flag_neighbours(rows()[1:]) == []
    assert flag_lines(rows()[1:]) == []
    with pytest.raises(ValueError, match="fid_ratio"):
        flag_neighbours(rows(), fid_ratio=0.9)


def test_report_lists_the_flagged_classes(tmp_path):
    results = {"title": "t", "tables": [{"name": "inpaint:3", "rows": rows()}]}
    for row in results["tables"][0]["rows"]:
        row["metrics"]["per_class_F"] = {"7": 0.5}
    (tmp_path / "results.json").write_text(json.dumps(results))
    text = write_report(tmp_path).read_text()
    assert "- Ours (proxy retain): class 5: accuracy 0.87 -> 0.65" in text
    assert "- Ours: class 5: accuracy 0.87 -> 0.80; FID 10.0 -> 13.0 (1.30x)" in text
    assert "class 8" not in text


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def closed_form_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def test_per_class_fid_against_the_closed_form_per_class():
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([3, 7] * 60)
    real = torch.randn(120, 3, 1, 1, generator=generator, dtype=torch.float64)
    fake = real * 1.5 + labels.view(-1, 1, 1, 1) * 0.1 + torch.randn(120, 3, 1, 1, generator=generator,
                                                                     dtype=torch.float64) * 0.3
    got = per_class_fid(real, fake, labels, Flatten())
    assert set(got) == {"3", "7"}
    for c in (3, 7):
        expected = closed_form_fid(real[labels == c].flatten(1).numpy(), fake[labels == c].flatten(1).numpy())
        assert math.isclose(got[str(c)], expected, rel_tol=1e-8)
    with pytest.raises(ValueError, match="same images"):
        per_class_fid(real, fake[:10], labels, Flatten())


def test_eval_command_prints_the_flagged_classes(tmp_path, capsys):
    """`l2l-fast eval` prints the retain classes the stated rule flags against its first model
    (accuracy on generated images here: the eval-file path records per-class accuracy)."""
    import yaml

    from l2l_fast import cli
    from l2l_fast import load_model
    from l2l_fast.data.fashion_mnist import DEFAULT_ROOT
    from l2l_fast.models import save_model

    if not DEFAULT_ROOT.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    broken = load_model("demo")
    with torch.no_grad():
        for p in broken.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    path = save_model(broken, tmp_path / "broken.safetensors")
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({
        "models": {"Original": "demo", "Broken": str(path)}, "mask": "inpaint:3", "seed": 0,
        "out": str(tmp_path / "out"),
        "data": {"dataset": "fashion-mnist", "forget": [0, 1], "retain": [2, 3, 4, 5, 6, 7, 8, 9], "per_class": 40}},
        sort_keys=False))
    assert cli.main(["eval", "--config", str(config), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["tables"][0]["rows"]
    before, after = ({row["method"]: row["metrics"] for row in rows}[name] for name in ("Original", "Broken"))
    expected = sorted(c for c in before["per_class_R"]  # the stated rule, by hand
                      if before["per_class_R"][c] - after["per_class_R"][c] > 0.05)
    assert expected, "the perturbed encoder should move some retain class"
    flagged = sorted(line.split("class ")[1].split(":")[0] for line in printed.splitlines()
                     if line.startswith("- Broken: class "))
    assert flagged == expected

import csv
import json

import pytest
import torch

from l2l_fast import cli, load_model
from l2l_fast.adapters import adapter_for
from l2l_fast.evaluation import evaluate_model
from l2l_fast.evaluation.generation import COLUMNS, generate
from l2l_fast.evaluation.metrics import load_classifier
from l2l_fast.evaluation.report import write_report
from l2l_fast.models.masks import parse_mask


def test_report_from_results(tmp_path):
    metrics = {c: float(i) + 0.5 for i, c in enumerate(COLUMNS)}
    results = {"title": "T", "notes": ["a note"],
               "tables": [{"name": "inpaint:3", "grid": "grid.png",
                           "rows": [{"method": "Original", "metrics": metrics},
                                    {"method": "Ours", "metrics": {**metrics, "FID_F": 99.0}}]}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path).read_text()
    assert "| method | FID_R↓ | IS_R↑ | CLIP_R↑ | FID_F↑ | IS_F↓ | CLIP_F↓ | acc_R↑ | acc_F↓ |" in report
    assert "| Ours | 0.500 | 1.500 | 2.500 | 99.000 |" in report and "- a note" in report
    assert "![Examples (columns: ground truth, input, then each method)](grid.png)" in report
    with open(tmp_path / "table_inpaint_3.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["method", *COLUMNS] and rows[2][0] == "Ours" and float(rows[2][4]) == 99.0


def test_report_needs_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        write_report(tmp_path)


def test_generation_is_seeded_and_keeps_the_visible_region():
    adapter = adapter_for(load_model("demo"))
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = generate(adapter, images, "random:0.5", seed=3, batch_size=2)
    b = generate(adapter, images, "random:0.5", seed=3, batch_size=2)
    assert torch.equal(a, b) and a.shape == images.shape
    keep = adapter.pixel_keep(adapter.draw(parse_mask("random:0.5"), 2, torch.Generator().manual_seed(3)))
    assert torch.equal(a[:2] * keep, images[:2] * keep)


def test_generated_images_are_clamped_to_the_unit_range_as_saved_images_are():
    model = load_model("demo")
    with torch.no_grad():
        for parameter in model.decoder.decoder_pred.parameters():
            parameter.mul_(20.0)  # completions far outside [0, 1]
    adapter = adapter_for(model)
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    raw = adapter.generate(images, adapter.draw(parse_mask("inpaint:3"), 4, torch.Generator().manual_seed(1)))
    assert raw.max() > 1.5
    assert torch.equal(generate(adapter, images, "inpaint:3", seed=1), raw.clamp(0, 1))


def test_evaluate_the_original_model_on_its_own_test_images():
    from l2l_fast.data.assets import load_demo_images

    images, labels = load_demo_images("test")

    def pick(classes):
        chosen = torch.isin(labels, torch.tensor(classes))
        return images[chosen][::5], labels[chosen][::5]

    adapter = adapter_for(load_model("demo"))
    metrics, generated = evaluate_model(adapter, pick([2, 3]), pick([0, 1]), mask="inpaint:3",
                                        classifier=load_classifier(), seed=0)
    assert set(COLUMNS) <= set(metrics) and generated["R"].shape == (40, 1, 28, 28)
    assert metrics["CLIP_R"] > 0.9 and metrics["acc_F"] > 0.7  # a good inpainter keeps the class
    assert set(metrics["per_class_F"]) == {"0", "1"}


def test_eval_and_report_commands(tmp_path, capsys):
    from l2l_fast.data.fashion_mnist import DEFAULT_ROOT

    if not DEFAULT_ROOT.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    assert cli.main(["eval", "--model", "demo", "--names", "Original", "--out", str(tmp_path)]) == 0
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "| Original |" in (tmp_path / "report.md").read_text()

import re

import pytest
import torch
import yaml
from PIL import Image

import l2l_fast
from l2l_fast import cli
from l2l_fast.data.assets import DEMO_IMAGES, DEMO_MODEL, load_demo_images
from l2l_fast.evaluation.before_after import format_table


def test_shipped_assets_load():
    model = l2l_fast.load_model("demo")
    assert model.state_dict().keys() == l2l_fast.load_model(DEMO_MODEL).state_dict().keys()
    assert model.family == "mae" and model.img_size == 28
    images, labels = load_demo_images("test")
    assert images.shape[1:] == (1, 28, 28) and torch.bincount(labels).min() > 0
    assert DEMO_IMAGES.stat().st_size < 5e6


def test_format_table_ratios():
    table = format_table({0: 0.01, 1: 0.02, 2: 0.04}, {0: 0.05, 1: 0.06, 2: 0.04}, forget=(0, 1))
    assert "5.00x" in table and "3.00x" in table and "1.00x" in table
    assert re.search(r"mean\s+forget\s+0.0150\s+0.0550\s+3.67x", table)


@pytest.mark.slow
def test_demo_command_on_a_small_setting(tmp_path, capsys):
    code = cli.main(["demo", "--steps", "6", "--batch-size", "8", "--eval-per-class", "4",
                     "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Trouser" in printed and re.search(r"mean\s+forget", printed) and re.search(r"mean\s+retain", printed)
    with Image.open(tmp_path / "demo_grid.png") as image:
        assert image.size[0] > 200 and image.size[1] > 300


@pytest.mark.slow
def test_the_demo_writes_a_model_that_eval_reads(tmp_path, capsys):
    demo_dir = tmp_path / "demo"
    assert cli.main(["demo", "--steps", "5", "--eval-per-class", "2", "--out", str(demo_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    model = demo_dir / "unlearned.safetensors"
    assert model.is_file() and f"l2l-fast eval --model demo {model}" in printed
    eval_file = tmp_path / "eval.yaml"  # the printed command on the demo's own test images, a few per class
    eval_file.write_text(yaml.safe_dump({
        "models": {"original": "demo", "unlearned": str(model)}, "mask": "inpaint:3", "out": str(tmp_path / "eval"),
        "data": {"dataset": "demo", "split": "test", "forget": [0, 1], "retain": [2, 3], "per_class": 4},
        "metrics": {"classifier": "shipped"}}))
    assert cli.main(["eval", "--config", str(eval_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "models.unlearned" in out and "forgets T-shirt/top, Trouser (8 images)" in out
    report = (tmp_path / "eval" / "report.md").read_text()  # per-class columns by name
    assert "| method | T-shirt/top | Trouser | Pullover | Dress |" in report


def test_the_table_says_which_direction_is_good_and_why_a_retain_class_moved():
    from l2l_fast.evaluation.before_after import nearest_forgotten

    images, labels = load_demo_images("test")
    nearest = nearest_forgotten(images, labels, (0, 1))
    assert nearest[6] == 0  # Shirt looks most like T-shirt/top
    table = format_table({0: 0.01, 1: 0.02, 6: 0.01, 7: 0.01}, {0: 0.05, 1: 0.06, 6: 0.024, 7: 0.0101},
                         forget=(0, 1), nearest=nearest)
    assert "higher is better" in table and "1.00x is best" in table
    assert re.search(r"Shirt\s+retain.*2.40x\s+\(looks most like forgotten T-shirt/top\)", table)
    assert "Sneaker" in table and table.count("looks most like") == 1

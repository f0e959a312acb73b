"""What a new user meets in the first hour: a mask that leaves nothing to inpaint is refused
before any step, in `unlearn` and `eval` alike."""
import pytest
import yaml

from l2l_fast import cli

RUN = {
    "model": "demo",
    "data": {"dataset": "demo", "forget": [0], "retain": [2, 3], "per_class": 6},
    "unlearn": {"steps": 2, "batch_size": 4, "lr": 1e-3, "progress": False},
}


@pytest.mark.parametrize("mask, says", [("inpaint:7", "hides every cell"), ("outpaint:7", "hides no cell"),
                                        ("box:side=0.99", "hides every cell")])
def test_a_mask_that_leaves_no_input_or_no_hole_is_refused_before_any_step(tmp_path, capsys, mask, says):
    path, out = tmp_path / "run.yaml", tmp_path / "out.safetensors"
    path.write_text(yaml.safe_dump({**RUN, "unlearn": {**RUN["unlearn"], "mask": mask}, "output": str(out)}))
    assert cli.main(["unlearn", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("l2l-fast unlearn: ")
    assert mask in err and says in err and "7x7 grid" in err and "fit" in err
    assert "unlearn (ours)" not in captured.err and not out.exists() and not any(tmp_path.glob("*checkpoints*"))


def test_eval_refuses_a_full_grid_mask_before_generating(tmp_path, capsys):
    assert cli.main(["eval", "--model", "demo", "--mask", "inpaint:7", "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "inpaint:7" in err and "7x7 grid" in err and "inpaint:1 to inpaint:6 fit" in err
    assert err.count("l2l-fast eval:") == 1
    assert not (tmp_path / "eval").exists()


def test_paths_in_a_run_file_are_relative_to_it(tmp_path, monkeypatch, capsys):
    from l2l_fast.models import save_model
    from l2l_fast.models.io import load_model

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    save_model(load_model("demo"), project / "models" / "original.safetensors")
    run = {**RUN, "model": "models/original.safetensors", "output": "models/unlearned.safetensors"}
    (project / "run.yaml").write_text(yaml.safe_dump(run))
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert cli.main(["unlearn", "--config", "../../project/run.yaml", "--no-progress"]) == 0
    assert (project / "models" / "unlearned.safetensors").is_file() and not list(elsewhere.iterdir())
    assert "--config" not in capsys.readouterr().err


def test_relative_paths_resolve_per_key():
    from l2l_fast.cli.paths import EVAL_PATHS, RUN_PATHS, relative_to_file

    run = relative_to_file({"model": {"family": "mage", "checkpoint": "w/m.pth", "arch": "vit_base"},
                            "data": {"root": "/abs/data", "class_list": "c.txt"}, "output": "o.safetensors"},
                           "/files/run.yaml", RUN_PATHS)
    assert run["model"] == {"family": "mage", "checkpoint": "/files/w/m.pth", "arch": "vit_base"}
    assert run["data"] == {"root": "/abs/data", "class_list": "/files/c.txt"} and run["output"] == "/files/o.safetensors"
    evaluation = relative_to_file({"models": {"A": "demo", "B": "b.safetensors"}, "out": "res",
                                   "metrics": {"clip": "ViT-H-14:w/clip.bin", "classifier": "timm:rn50:w/r.pth"}},
                                  "/files/eval.yaml", EVAL_PATHS)
    assert evaluation["models"] == {"A": "demo", "B": "/files/b.safetensors"} and evaluation["out"] == "/files/res"
    assert evaluation["metrics"] == {"clip": "ViT-H-14:/files/w/clip.bin", "classifier": "timm:rn50:/files/w/r.pth"}


def _bad_checkpoints(folder):
    import argparse

    import torch

    corrupt, payload = folder / "corrupt.pth", folder / "payload.pth"
    corrupt.write_bytes(b"not a checkpoint at all " * 40)
    torch.save({"model": {"w": torch.ones(2)}, "builder": argparse.ArgumentParser}, payload)
    return {"corrupt": (corrupt, "not a PyTorch checkpoint"), "payload": (payload, "argparse.ArgumentParser")}


@pytest.mark.parametrize("kind", ["corrupt", "payload"])
@pytest.mark.parametrize("command", ["unlearn", "eval", "import"])
def test_an_unreadable_or_unsafe_checkpoint_is_one_line_naming_it(tmp_path, capsys, kind, command):
    path, says = _bad_checkpoints(tmp_path)[kind]
    if command == "unlearn":
        run = tmp_path / "run.yaml"
        run.write_text(yaml.safe_dump({**RUN, "model": {"family": "mae", "checkpoint": str(path), "arch": "mae_vit_base_patch16"}}))
        argv = ["unlearn", "--config", str(run)]
    elif command == "eval":
        argv = ["eval", "--model", "demo", str(path), "--out", str(tmp_path / "eval")]
    else:
        argv = ["import", str(path), "--family", "mae", "--out", str(tmp_path / "m.safetensors")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and str(path) in err, err
    assert "weights_only" not in err and "set to False" not in err
    if command == "eval":  # eval reads l2l-fast's own checkpoints only, and says what else it was given
        says = "holds a PyTorch pickle" if kind == "payload" else "not a checkpoint written by l2l-fast"
    assert says in err, err


def test_unlearn_starts_with_a_header_and_warns_of_a_short_class(tmp_path, capsys, caplog):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**RUN, "data": {**RUN["data"], "per_class": 400}}))
    with caplog.at_level("WARNING"):
        assert cli.main(["unlearn", "--config", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "model demo: mae, 0.91M parameters, 1x28x28 images on a 7x7 grid, pixels [0, 1]" in out
    assert "forgets T-shirt/top (300 images); keeps Pullover, Dress (600 images)" in out
    assert "2 steps of 4 forget + 4 retain images" in out and "device cpu" in out
    assert "data.per_class 400 is above the 300 images of class Pullover" in caplog.text


def test_version_and_help_that_shows_defaults_without_source_paths(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip().startswith("l2l-fast 0.")
    for command in ("unlearn", "eval"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "l2l_fast/" not in text and ".py" not in text and "relative to it" in text
        assert "(default 0.25;" in text if command == "unlearn" else "(default ['inpaint:3']" in text


def test_grid_rows_are_labelled_with_class_names():
    import torch

    from l2l_fast.evaluation.results import grid_rows

    keep = {f"grid_F_{part}": torch.zeros(2, 1, 4, 4) for part in ("truth", "input", "generated")}
    keep["grid_F_label"] = torch.tensor([1, 0])
    rows = grid_rows([({"method": "A"}, keep)], class_names={"0": "T-shirt/top", "1": "Trouser"})
    assert [label for label, _ in rows] == ["forget\nTrouser", "forget\nT-shirt/top"]
    del keep["grid_F_label"]  # rows finished before labels were kept
    assert [label for label, _ in grid_rows([({"method": "A"}, keep)])] == ["forget 0", "forget 1"]


@pytest.mark.parametrize("step_seconds, every", [(1.0, 100), (0.01, 100), (10.0, 12), (200.0, 1)])
def test_the_save_schedule_comes_from_the_step_time(monkeypatch, step_seconds, every):
    """N = clamp(round(120 s / step time), 1, steps // 10), measured over steps 2-4; a tenth before."""
    import torch

    from l2l_fast.training import checkpointing, distributed

    clock = iter([0.0, 3 * step_seconds])
    monkeypatch.setattr(checkpointing.time, "perf_counter", lambda: next(clock))
    schedule = checkpointing.Schedule(distributed.Context(), 1000, None, 0, torch.device("cpu"))
    saved = [done for done in range(1, 1001) if schedule.due(done)]
    assert schedule.every == every and saved[-1] == 1000
    assert [d for d in saved if d > 4] == [d for d in range(5, 1001) if d % every == 0 or d == 1000]
    fixed = checkpointing.Schedule(distributed.Context(), 1000, 7, 0, torch.device("cpu"))
    assert [d for d in range(1, 30) if fixed.due(d)] == [7, 14, 21, 28]

"""Every mistake in a run file ends `l2l-fast unlearn` with one line on stderr naming the
key, and exit status 2, before any work; the valid file still runs."""
import dataclasses

import pytest
import yaml

from l2l_fast import UnlearnConfig, cli

VALID = {
    "model": "demo",
    "data": {"dataset": "demo", "forget": [0], "retain": [2, 3], "per_class": 6},
    "unlearn": {"steps": 2, "batch_size": 4, "lr": 1e-3, "mask": "inpaint:3", "progress": False},
}


def changed(**sections):
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in VALID.items()}
    for section, change in sections.items():
        if isinstance(change, dict) and isinstance(raw.get(section), dict):
            raw[section].update(change)
        elif change is None:
            raw.pop(section, None)
        else:
            raw[section] = change
    return raw


ISSUE_ROWS = [  # the table of issue 19
    (changed(model="no/such/model.safetensors"), "model"),
    (changed(data={"split": "x"}), "data.split"),
    (changed(data={"split": True}), "data.split"),
    (changed(data={"split": [1]}), "data.split"),
    (changed(data={"split": 3}), "data.split"),
    (changed(unlearn={"batch_size": 10 ** 12}), "batch_size"),
    (changed(unlearn={"seed": 1.5}), "unlearn.seed"),
    (changed(unlearn={"seed": "zero"}), "unlearn.seed"),
    (changed(unlearn={"noise_clamp": [0, 0]}), "unlearn.noise_clamp"),
    (changed(data={"forget": [0, 1], "retain": [1, 2]}), "data.retain"),
    (changed(data={"root": "/tmp"}), "data"),
]

WRONG_VALUE = {int: "many", float: "big", bool: "yes", str: 5}


def wrong_types():
    """One mutation a field of UnlearnConfig: a value of the wrong type."""
    cases = []
    for spec in dataclasses.fields(UnlearnConfig):
        kind = {"steps": int, "batch_size": int, "seed": int, "warmup_steps": int, "log_every": int,
                "checkpoint_every": int, "num_workers": int, "prefetch": int, "retain_holdout": int,
                "check_every": int, "forget_maps": int}.get(spec.name)
        if kind is None:
            default = spec.default
            kind = bool if isinstance(default, bool) else float if isinstance(default, float) else str
            if spec.name in ("lr", "grad_clip", "retain_budget"):
                kind = float
        value = [1, 2, 3] if spec.name == "noise_clamp" else WRONG_VALUE[kind]
        cases.append((changed(unlearn={spec.name: value}), f"unlearn.{spec.name}"))
    return cases


OWN_ROWS = wrong_types() + [
    ("just a string", "mapping"),
    (changed(data=None), "data.retain"),
    (changed(unlearn=None), "unlearn.steps"),
    (changed(unlearn="fast"), "unlearn"),
    (changed(data="demo"), "data"),
    (changed(extra=1), "the file"),
    (changed(data={"colour": "red"}), "data"),
    (changed(unlearn={"learning_rate": 1e-3}), "unlearn"),
    (changed(data={"forget": None, "forget_indices": [-1]}), "data.forget_indices"),
    (changed(data={"forget": None, "forget_indices": [0, 1.5]}), "data.forget_indices"),
    (changed(data={"per_class": True}), "data.per_class"),
    (changed(data={"dataset": "fashion-mnist", "root": "/no/such/folder"}), "data.root"),
    (changed(data={"dataset": "folders", "root": "/tmp", "class_list": "/no/such/list.txt"}), "data.class_list"),
    (changed(data={"image_size": 32}), "data"),
    (changed(unlearn={"mask": "inpaint:8"}), "mask"),
    (changed(unlearn={"device": "cuda"}), "device"),
    (changed(unlearn={"method": "forget_harder"}), "unlearn.method"),
]


@pytest.mark.parametrize("raw, key", ISSUE_ROWS + OWN_ROWS)
def test_a_mistake_is_one_line_naming_the_key(tmp_path, capsys, raw, key):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["unlearn", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("l2l-fast unlearn: ") and str(path) in err and key in err
    assert "unlearn (ours)" not in captured.err  # no step was taken


def test_an_unreadable_checkpoint_is_one_line(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not a safetensors file")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(changed(model=str(model))))
    assert cli.main(["unlearn", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model" in err and "cannot be loaded" in err


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(changed(unlearn={"seed": 1.5})))
    with pytest.raises(ValueError, match="unlearn.seed must be an integer"):
        cli.main(["unlearn", "--config", str(path), "--debug"])


def test_the_valid_file_still_runs(tmp_path):
    path = tmp_path / "run.yaml"
    out = tmp_path / "out.safetensors"
    path.write_text(yaml.safe_dump({**VALID, "output": str(out)}))
    assert cli.main(["unlearn", "--config", str(path)]) == 0 and out.is_file()


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--model", "no/such.safetensors", "--out", "{tmp}/eval"], "no/such.safetensors"),
    (["pretrain", "--family", "mae", "--root", "{tmp}/no_such_root", "--out", "{tmp}/m.safetensors"],
     "no_such_root"),
    (["train-classifier", "--root", "{tmp}/no_such_root", "--out", "{tmp}/c.safetensors"], "no_such_root"),
])
def test_other_commands_report_missing_files_in_one_line(tmp_path, capsys, argv, needle):
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith(f"l2l-fast {argv[0]}: ") and needle in err

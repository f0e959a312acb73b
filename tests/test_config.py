import dataclasses

import pytest
import torch
import yaml

import l2l_fast
from l2l_fast import cli, load_model
from l2l_fast.cli.run_files import ConfigError, load_config, parse_config
from l2l_fast.unlearning import recipe as recipe_module

BASE = {
    "model": "demo",
    "data": {"dataset": "demo", "forget": [0], "retain": [2, 3], "per_class": 6},
    "unlearn": {"steps": 2, "batch_size": 4, "lr": 1e-3, "mask": "inpaint:3"},
}


def with_changes(**sections):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for section, changes in sections.items():
        if isinstance(changes, dict):
            raw[section] = {**raw.get(section, {}), **changes}
        else:
            raw[section] = changes
    return raw


@pytest.mark.parametrize("raw, message", [
    ([1, 2], "must hold a mapping"),
    (with_changes(extra=1), r"the file has unknown keys \['extra'\]"),
    (with_changes(model=3), "model must be 'demo' or a checkpoint path"),
    (with_changes(data={"dataset": "mnist"}), "data.dataset must be one of"),
    (with_changes(data={"colour": "red"}), r"data has unknown keys \['colour'\]"),
    (with_changes(data={"forget": 0}), "data.forget must be a non-empty list"),
    (with_changes(data={"forget": ["shirt"]}), "data.forget must list class indices"),
    (with_changes(data={"forget_indices": [1, 2]}), "exactly one of forget"),
    (with_changes(data={"retain": None}), "data.retain is required"),
    (with_changes(data={"dataset": "folders"}), "needs root and class_list"),
    (with_changes(data={"per_class": 0}), "data.per_class must be a positive integer"),
    (with_changes(unlearn={"learning_rate": 1.0}), r"unlearn has unknown keys \['learning_rate'\]"),
    (with_changes(unlearn={"noise_clamp": 1}), r"unlearn.noise_clamp must be \[lo, hi\]"),
    ({**BASE, "unlearn": {"batch_size": 4}}, "unlearn.steps is required"),
    (with_changes(data={"forget": [0, 1], "retain": [1, 2]}), r"data.retain: classes \[1\] are also in forget"),
    (with_changes(data={"dataset": "fashion-mnist", "forget": [3], "retain": [3]}), "are also in forget"),
    (with_changes(unlearn={"seed": 1.5}), "unlearn.seed must be an integer"),
    (with_changes(unlearn={"seed": -1}), "unlearn.seed must be >= 0"),
    (with_changes(unlearn={"noise_clamp": [0, 0]}), "unlearn.noise_clamp must have lo < hi"),
    (with_changes(unlearn={"mask": "inpaint"}), "unlearn.mask must be"),
    (with_changes(unlearn={"checkpoint_every": 5}), "unlearn.checkpoint_every needs checkpoint_dir"),
])
def test_validation_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "run.yaml")


# Every UnlearnConfig field at a valid value other than its default (fsdp needs an
# encoder-only method, cache_targets=False applies to any method), as a run file writes it,
# and as the config holds it.
NON_DEFAULT = {
    "steps": 3, "batch_size": 2, "alpha": 0.1, "lr": 2e-3, "mask": "outpaint:2", "seed": 4, "device": "cpu",
    "distance": "l2", "noise_stats": "channel", "noise_clamp": [0.25, 0.75], "warmup_steps": 1,
    "weight_decay": 0.0, "grad_clip": 1.5, "diffusion_target": "noise_image", "method": "random_encoder",
    "precision": "bf16", "repeat_samples": True, "progress": False, "log_every": 2,
    "checkpoint_dir": "CKPT", "checkpoint_every": 2, "resume_from": "OLD", "fsdp": True,
    "checkpoint_activations": True, "cache_targets": False, "compile": True, "num_workers": 1, "prefetch": 3,
    "decode_cache": "off", "cache_dir": "CACHE", "max_bad_fraction": 0.05, "retain_budget": 0.2,
    "retain_holdout": 5, "check_every": 2, "forget_maps": 2,
}


def test_every_unlearn_option_in_a_run_file_reaches_the_recipe(tmp_path, monkeypatch):
    """Each field set in the file arrives, with its value, in the UnlearnConfig the run's
    recipe is built with (the recipe is stopped there)."""
    fields = {f.name: f for f in dataclasses.fields(l2l_fast.UnlearnConfig)}
    assert set(NON_DEFAULT) == set(fields)
    options = {k: str(tmp_path / v) if k.endswith("_dir") or k == "resume_from" else v
               for k, v in NON_DEFAULT.items()}
    assert [k for k, v in options.items() if v == fields[k].default] == []
    expected = {**options, "noise_clamp": (0.25, 0.75)}

    class Reached(Exception):
        pass

    class StopRecipe:
        def __init__(self, model, forget, retain, config, **kwargs):
            self.config = config
            raise Reached(self)

    monkeypatch.setattr(recipe_module, "UnlearnRecipe", StopRecipe)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(with_changes(unlearn=options)))
    assert dataclasses.asdict(load_config(path).unlearn) == expected
    with pytest.raises(Reached) as reached:
        cli.main(["unlearn", "--config", str(path)])
    assert dataclasses.asdict(reached.value.args[0].config) == expected


def test_a_mask_that_does_not_fit_the_grid_fails_before_any_step(tmp_path, capsys):
    """The demo MAE has a 7 x 7 patch grid: inpaint:8 is reported before the run starts."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(with_changes(unlearn={"mask": "inpaint:8"})))
    assert cli.main(["unlearn", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mask 'inpaint:8'" in err and "does not fit the 7x7 patch grid" in err and "unlearn (ours)" not in err


def test_unlearn_config_holds_every_option_with_a_doc():
    docs = l2l_fast.UnlearnConfig.docs()
    assert {"steps", "batch_size", "alpha", "seed", "mask", "checkpoint_dir", "compile"} <= set(docs)
    assert all(isinstance(doc, str) and doc for doc in docs.values())
    config = l2l_fast.UnlearnConfig(steps=3, batch_size=2, noise_clamp=[0, 1])
    assert config.noise_clamp == (0.0, 1.0) and config.recorded()["noise_clamp"] == [0.0, 1.0]
    assert "progress" not in config.recorded() and config.recorded()["steps"] == 3
    resolved = config.resolved("cpu")
    assert resolved.lr == pytest.approx(1e-4 * 4 / 256) and resolved.warmup_steps == 1 and resolved.log_every == 1
    with pytest.raises(ValueError, match=r"unknown options \['colour'\]"):
        l2l_fast.UnlearnConfig.from_dict({"steps": 1, "batch_size": 1, "colour": "red"})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_unlearn_command_runs_and_saves(tmp_path, capsys):
    out = tmp_path / "unlearned.safetensors"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(out)}))
    assert cli.main(["unlearn", "--config", str(path), "--no-progress"]) == 0
    model = load_model(out)
    original = load_model("demo")
    assert all(torch.equal(v, original.decoder.state_dict()[k]) for k, v in model.decoder.state_dict().items())
    assert not torch.equal(model.encoder.blocks[0].mlp.fc1.weight, original.encoder.blocks[0].mlp.fc1.weight)
    assert "saved the unlearned model" in capsys.readouterr().out


def test_unlearn_errors_come_back_with_the_file_name(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(with_changes(unlearn={"alpha": -1.0})))
    assert cli.main(["unlearn", "--config", str(path), "--no-progress"]) == 2
    assert "run.yaml: unlearn.alpha must be >= 0" in capsys.readouterr().err


def test_forget_individual_samples(tmp_path):
    from l2l_fast.data.assets import load_demo_images
    from l2l_fast.cli.run import run_data

    images, labels = load_demo_images("train")
    retain_class = int(labels[5])
    config = parse_config(with_changes(data={"forget": None, "forget_indices": [5, 7], "retain": [retain_class],
                                             "per_class": None}))
    forget, retain = run_data(config, None)
    assert torch.equal(forget, images[[5, 7]])
    assert len(retain) == int((labels == retain_class).sum()) - int((labels[[5, 7]] == retain_class).sum())

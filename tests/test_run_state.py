"""Run checkpoints: a killed run resumes bit for bit, a corrupt or truncated newest
checkpoint falls back to the previous one, resuming checks the arguments and the
model, `l2l-fast unlearn --resume`, and corrupt images at run level."""
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

import l2l_fast
from l2l_fast import cli, load_model
from l2l_fast.training import checkpointing

from conftest import CASES, FORGET, RETAIN, make_folders, tiny_model, unlearn_kind

# Children import the same l2l_fast as this process (the installed build, with _C).
ROOT = Path(l2l_fast.__file__).resolve().parents[1]
KWARGS = dict(CASES["ddp"][1], steps=6)
WORKER = str(Path(__file__).with_name("distributed_worker.py"))


def encoder_equal(a, b) -> bool:
    return all(torch.equal(v, b.encoder.state_dict()[k]) for k, v in a.encoder.state_dict().items())


@pytest.fixture(scope="module")
def straight():
    return l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **KWARGS)


def checkpointed(folder: Path):
    return l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, checkpoint_dir=str(folder), checkpoint_every=1, **KWARGS)


def resume(folder: Path, log=None, **changes):
    return l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, resume_from=str(folder), checkpoint_every=1,
                            callback=None if log is None else log.append, **{**KWARGS, **changes})


def test_checkpoints_are_safetensors_and_json_and_the_last_two_are_kept(tmp_path, straight):
    model = checkpointed(tmp_path)
    assert encoder_equal(model, straight)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000005.json", "step-00000005.safetensors", "step-00000006.json", "step-00000006.safetensors"]
    with safe_open(str(tmp_path / "step-00000006.safetensors"), framework="pt") as handle:
        meta = json.loads(handle.metadata()["l2l_fast"])
        keys = set(handle.keys())
    assert meta["step"] == 6 and meta["arguments"]["steps"] == 6 and meta["arguments"]["mask"] == "random:0.5"
    assert {"generator", "sampler.forget", "sampler.retain", "rng.cpu.0"} <= keys
    assert "trainable.blocks.0.attn.qkv.weight" in keys and "optimizer.0.exp_avg" in keys
    sidecar = json.loads((tmp_path / "step-00000006.json").read_text())
    assert sidecar["sha256"] == checkpointing.sha256(tmp_path / "step-00000006.safetensors")


@pytest.mark.parametrize("kind", ["mae", "dropout"])
def test_killed_run_resumes_bit_for_bit(tmp_path, kind):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))}
    folder = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, WORKER, "slow_checkpointed", str(tmp_path), kind],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not checkpointing.existing(folder) or checkpointing.existing(folder)[-1] < 3:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint of step 3 within a minute"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.stderr.close()
    killed_at = checkpointing.existing(folder)[-1]
    assert 3 <= killed_at < 12
    log = []
    kwargs = dict(CASES["ddp"][1], steps=12)
    resumed = unlearn_kind(kind, resume_from=str(folder), checkpoint_every=1, callback=log.append, **kwargs)
    uninterrupted = unlearn_kind(kind, **kwargs)
    assert log[0]["step"] == killed_at and log[-1]["step"] == 11
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in uninterrupted.state_dict().items())


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (truncate, "truncated"),
    (flip_a_byte, "SHA-256"),
    (lambda path: path.with_suffix(".json").write_text("{not json"), "unreadable sidecar"),
    (lambda path: path.unlink(), "missing"),
])
def test_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, straight, caplog, damage,
                                                                         reason):
    checkpointed(tmp_path)
    damage(tmp_path / "step-00000006.safetensors")
    log = []
    with caplog.at_level(logging.WARNING, logger="l2l_fast"):
        model = resume(tmp_path, log)
    assert f"checkpoint step 6 in {tmp_path} is unusable" in caplog.text and reason in caplog.text
    assert "previous good checkpoint, step 5" in caplog.text
    assert [r["step"] for r in log] == [5]
    assert encoder_equal(model, straight)
    assert checkpointing.choose(tmp_path) == 6  # rewritten


def test_no_usable_checkpoint_is_an_error(tmp_path):
    checkpointed(tmp_path)
    for step in (5, 6):
        truncate(tmp_path / f"step-0000000{step}.safetensors")
    with pytest.raises(checkpointing.CheckpointError, match="no usable checkpoint .* step 6: .* step 5: "):
        resume(tmp_path)


def test_resuming_a_finished_run_changes_nothing(tmp_path, straight):
    checkpointed(tmp_path)
    log = []
    assert encoder_equal(resume(tmp_path, log), straight) and log == []


def test_resume_from_an_empty_folder_starts_at_step_0(tmp_path, straight, caplog):
    with caplog.at_level(logging.WARNING, logger="l2l_fast"):
        model = resume(tmp_path / "not_yet")
    assert "starting from step 0" in caplog.text and encoder_equal(model, straight)


def test_resume_checks_arguments_and_model(tmp_path):
    checkpointed(tmp_path)
    with pytest.raises(ValueError, match="other arguments: steps=6 there, 7 here"):
        resume(tmp_path, steps=7)
    unlearned = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **KWARGS)
    with pytest.raises(ValueError, match="written for another model; resume with the original"):
        l2l_fast.unlearn(unlearned, FORGET, RETAIN, resume_from=str(tmp_path), **KWARGS)
    with pytest.raises(ValueError, match="already holds checkpoints .* pass resume_from"):
        checkpointed(tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint_dir"):
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, checkpoint_every=2, **KWARGS)
    with pytest.raises(ValueError, match="fsdp shards the encoder"):
        l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, fsdp=True, **dict(KWARGS, method="max_loss"))


CONFIG = {
    "model": "demo",
    "data": {"dataset": "demo", "forget": [0], "retain": [2, 3], "per_class": 6},
    "unlearn": {"steps": 3, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1},
}


def test_cli_resume_continues_bit_for_bit(tmp_path, capsys):
    config = {**CONFIG, "output": str(tmp_path / "out.safetensors"),
              "unlearn": {**CONFIG["unlearn"], "checkpoint_dir": str(tmp_path / "checkpoints")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["unlearn", "--config", str(path), "--no-progress"]) == 0
    straight = load_model(tmp_path / "out.safetensors").state_dict()
    for file in (tmp_path / "checkpoints").glob("step-00000003.*"):
        file.unlink()
    assert cli.main(["unlearn", "--config", str(path), "--no-progress"]) == 2
    assert "holds the checkpoints of an unfinished run (step 2): continue it with --resume" in capsys.readouterr().err
    assert cli.main(["unlearn", "--config", str(path), "--no-progress", "--resume"]) == 0
    resumed = load_model(tmp_path / "out.safetensors").state_dict()
    assert all(torch.equal(v, resumed[k]) for k, v in straight.items())


def test_cli_resume_needs_a_checkpoint_dir(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    options = {k: v for k, v in CONFIG["unlearn"].items() if k != "checkpoint_every"}
    path.write_text(yaml.safe_dump({**CONFIG, "unlearn": options}))
    assert cli.main(["unlearn", "--config", str(path), "--resume"]) == 2
    assert "--resume needs unlearn.checkpoint_dir" in capsys.readouterr().err


def test_corrupt_images_in_a_folder_run_are_skipped_counted_or_fatal(tmp_path, caplog, capsys):
    make_folders(tmp_path / "few_bad", per_class=5, bad=1)
    make_folders(tmp_path / "many_bad", per_class=5, bad=3)
    for name in ("few_bad", "many_bad"):
        root = tmp_path / name
        config = {"model": "demo", "output": str(root / "out.safetensors"),
                  "data": {"dataset": "folders", "root": str(root), "class_list": str(root / "classes.txt"),
                           "forget": [3], "retain": [0, 1]},
                  "unlearn": {"steps": 6, "batch_size": 2, "max_bad_fraction": 0.1, "num_workers": 0}}
        (root / "run.yaml").write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.WARNING):  # 6 steps of 2 read all 11 retain files
        assert cli.main(["unlearn", "--config", str(tmp_path / "few_bad" / "run.yaml"), "--no-progress"]) == 0
    assert "broken_0.jpg is unreadable or gone; skipped for the rest of the run (1 bad so far)" in caplog.text
    assert cli.main(["unlearn", "--config", str(tmp_path / "many_bad" / "run.yaml"), "--no-progress"]) == 2
    assert "image files are unreadable or gone, more than max_bad_fraction=0.1; first: " in capsys.readouterr().err


def test_fp16_run_resumes_with_its_gradient_scaler_state(tmp_path, monkeypatch):
    """A scaler that grows every step and overflows at 2**19 skips some steps; the resumed
    run must continue with the saved scale, not the initial one, to match the straight run."""
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0 ** 16,
                                                                   growth_interval=1))
    kwargs = dict(KWARGS, precision="fp16")
    straight = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, **kwargs)
    l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, checkpoint_dir=str(tmp_path), checkpoint_every=3, **kwargs)
    with safe_open(str(tmp_path / "step-00000003.safetensors"), framework="pt") as handle:
        saved = json.loads(handle.metadata()["l2l_fast"])["grad_scaler"]
    assert saved["scale"] == 2.0 ** 19 and saved["_growth_tracker"] == 0
    for path in tmp_path.glob("step-00000006.*"):
        path.unlink()
    log = []
    resumed = l2l_fast.unlearn(tiny_model(), FORGET, RETAIN, resume_from=str(tmp_path), callback=log.append,
                               **kwargs)
    assert [r["step"] for r in log] == [3, 4, 5]
    assert encoder_equal(resumed, straight)

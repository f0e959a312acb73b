"""SIGINT and SIGTERM end a real `l2l-fast unlearn` cleanly: the run is saved at a step boundary,
one line gives the command that resumes it, the exit status is 128 + the signal, and the resumed
run ends bit-identical to one that was never interrupted."""
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
RUN = {"model": "demo", "data": {"dataset": "demo", "forget": [0], "retain": [2, 3], "per_class": 8},
       "unlearn": {"steps": 12, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 3}}


def command(argv):
    """A printed `l2l-fast ...` command, run with this interpreter."""
    assert argv[0] == "l2l-fast"
    return [sys.executable, "-m", "l2l_fast.cli", *argv[1:]]


def start(argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_run(folder: Path) -> None:
    folder.mkdir()
    (folder / "run.yaml").write_text(yaml.safe_dump({**RUN, "output": "out.safetensors"}))


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_saves_says_how_to_resume_and_resumes_bit_identical(tmp_path, signum, status):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    write_run(whole), write_run(cut)
    assert start(["l2l-fast", "unlearn", "--config", "run.yaml", "--no-progress"], whole).wait() == 0

    process = start(["l2l-fast", "unlearn", "--config", "run.yaml", "--no-progress"], cut)
    seen = []
    for line in process.stderr:  # interrupt once the run is under way (its first save)
        seen.append(line)
        if "saved the run at step" in line:
            process.send_signal(signum)
            break
    out, rest = process.communicate(timeout=300)
    err = "".join(seen) + rest
    assert process.returncode == status, err
    assert "Traceback" not in err and not (cut / "out.safetensors").exists()
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"l2l-fast unlearn: stopped by {signal.Signals(signum).name} after step ")
    assert "; saved the run to out.checkpoints/step-" in last  # beside the output, which is beside run.yaml
    resume = shlex.split(last.split("resume with: ", 1)[1])
    assert resume == ["l2l-fast", "unlearn", "--config", "run.yaml", "--no-progress", "--resume"]
    resumed = start(resume, cut)
    assert resumed.wait() == 0, resumed.stderr.read()
    expected, got = load_file(whole / "out.safetensors"), load_file(cut / "out.safetensors")
    assert expected.keys() == got.keys() and all((expected[k] == got[k]).all() for k in expected)
    assert not (cut / "out.checkpoints").exists()  # a finished run's default checkpoints are removed

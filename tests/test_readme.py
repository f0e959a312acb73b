"""The README's examples run as written.

- ```python blocks run, each on its own, in a temporary folder; a block whose first line is
  `# needs: ...` (official weights, diffusers, a GPU) is only compiled.
- ```yaml blocks whose first line is `# NAME.yaml` are written to that folder under NAME.yaml,
  and ```bash blocks made only of `l2l-fast ...` lines run there, line by line, through the CLI's
  `main` (again unless the block starts with `# needs: ...`).
- every `l2l-fast <command>` the README names exists, and every repository path it names exists.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NEEDS = "# needs:"


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every ```language block."""
    found, lines, start, current = [], README.read_text().splitlines(), None, None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == f"```{language}":
            start, current = number, []
        elif start is not None and line.strip() == "```":
            found.append((start, "\n".join(current) + "\n"))
            start = None
        elif start is not None:
            current.append(line)
    return found


def runnable(text: str) -> bool:
    return not text.lstrip().startswith(NEEDS)


@pytest.fixture
def small_machine(tmp_path, monkeypatch):
    """A temporary folder, one torch thread (the examples are sized for a busy 2-core CPU)."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


PYTHON = blocks("python")


def test_the_readme_has_examples():
    assert len(PYTHON) >= 4 and blocks("bash") and blocks("yaml")
    assert any(not runnable(text) for _, text in PYTHON), "the `# needs:` marker is never used"


@pytest.mark.parametrize("line,text", PYTHON, ids=[f"line{n}" for n, _ in PYTHON])
def test_python_example_runs(line, text, small_machine):
    code = compile(text, f"README.md:{line}", "exec")
    if not runnable(text):
        pytest.skip(text.splitlines()[0])
    exec(code, {"__name__": f"readme_line{line}"})


@pytest.mark.slow
def test_command_line_examples_run(small_machine, capsys):
    from l2l_fast.cli.main import main

    for line, text in blocks("yaml"):
        first = text.splitlines()[0].strip()
        if re.fullmatch(r"# [\w.-]+\.yaml", first):
            (small_machine / first[2:]).write_text(text)
    ran = []
    for line, text in blocks("bash"):
        commands = [c for c in text.splitlines() if c.strip()]
        if not runnable(text) or not all(c.startswith("l2l-fast ") for c in commands):
            continue
        for command in commands:
            argv = shlex.split(command, comments=True)[1:]
            if "--no-progress" not in argv and argv[0] in ("demo", "unlearn", "eval", "cache-images"):
                argv.append("--no-progress")
            assert main(argv) == 0, f"README.md:{line}: {command}"
            ran.append(argv[0])
    assert {"demo", "unlearn", "eval", "report"} <= set(ran)
    assert (small_machine / "results" / "report.md").is_file()


def test_named_commands_exist():
    from l2l_fast.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    named = set(re.findall(r"l2l-fast +([a-z][a-z-]*)", README.read_text()))
    assert named, "the README names no command"
    assert named <= set(commands), f"not commands of l2l-fast: {sorted(named - set(commands))}"


def test_named_paths_exist():
    text = README.read_text()
    paths = set(re.findall(r"(?<![\w/.-])((?:\.ci|l2l_fast|benchmarks|examples|tests|csrc|kernels)/[\w./-]*[\w/])",
                           text))
    paths |= set(re.findall(r"`((?:README|setup|pyproject|CMakeLists)[\w.]*)`", text))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"paths the README names that are not in the repository: {missing}"


def test_no_example_imports_the_cli():
    for path in [README, *sorted((ROOT / "examples").glob("*"))]:
        assert "from l2l_fast.cli" not in path.read_text(), path

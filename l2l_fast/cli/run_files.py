"""Run files for `l2l-fast unlearn --config run.yaml`, validated with errors that
name the file and the key.

    model: demo                 # the shipped Fashion-MNIST MAE, or a checkpoint path, or an
                                # official one: {family: mae|mage|palette|hf-mae, checkpoint: PATH,
                                #                tokenizer: PATH (mage), arch: NAME} (l2l-fast import)
    data:                       # l2l_fast.data.DataConfig (DataConfig.docs() lists every key)
      dataset: fashion-mnist    # fashion-mnist | demo | folders
      forget: [0, 1]            # classes (indices, or folder names for folders)
      retain: [2, 3, 4, 5]      # real retain classes, or a proxy set's classes
    unlearn:                    # any field of l2l_fast.UnlearnConfig
      steps: 300
      batch_size: 32
    output: unlearned.safetensors

With an output, the run checkpoints by default into a folder beside it (unlearned.checkpoints/,
removed when the run finishes) so that an interrupted run resumes with --resume;
`checkpoint_dir: null` turns that off, a path chooses another folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..data.config import DataConfig
from ..models import presets
from ..models.release import FAMILIES, MODEL_FAMILY
from ..training.options import check_keys, fail
from ..unlearning.config import UnlearnConfig
from .paths import RUN_PATHS, relative_to_file

TOP_KEYS = {"model", "data", "unlearn", "output"}
UNLEARN_KEYS = [f.name for f in dataclasses.fields(UnlearnConfig)]
MODEL_KEYS = {"family", "checkpoint", "tokenizer", "arch"}


class ConfigError(ValueError):
    pass


@contextlib.contextmanager
def naming(source: str):
    """Turns the ValueError of a config check (which names the key) into a ConfigError naming the file."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


@dataclass
class RunConfig:
    model: Union[str, dict]  # a path, "demo", or {family, checkpoint, tokenizer, arch}
    data: DataConfig
    unlearn: UnlearnConfig
    output: Optional[str]
    source: str = field(default="<config>")
    checkpoints_by_default: bool = False  # checkpoint_dir is the default folder beside the output


def _official_model(given: dict) -> dict:
    """model: {family, checkpoint, tokenizer, arch}, checked without loading anything."""
    check_keys("model", given, MODEL_KEYS)
    spec = {key: given.get(key) for key in sorted(MODEL_KEYS)}
    family = spec["family"]
    if family not in FAMILIES:
        fail("model.family", f"must be one of {FAMILIES}, got {family!r}")
    folder = family == "hf-mae"
    for key, kind in (("checkpoint", "folder" if folder else "file"), ("tokenizer", "file"), ("arch", "name")):
        value = spec[key]
        if value is None:
            if key == "checkpoint":
                fail("model.checkpoint", "is required: the release file (an HF folder for hf-mae)")
            continue
        if not isinstance(value, str) or not value:
            fail(f"model.{key}", f"must be a {kind}, got {value!r}")
        if key == "arch":
            if folder:
                fail("model.arch", "does not apply to hf-mae (its folder's config.json is the architecture)")
            if Path(value).suffix in (".yaml", ".yml", ".json"):
                if not Path(value).is_file():
                    fail("model.arch", f"{value!r} is not a file")
            elif presets.ARCHS.get(value, (None,))[0] != MODEL_FAMILY[family]:
                known = sorted(k for k, (f, _) in presets.ARCHS.items() if f == MODEL_FAMILY[family])
                fail("model.arch", f"must be one of {known} or a YAML file, got {value!r}")
        elif not (Path(value).is_dir() if kind == "folder" else Path(value).is_file()):
            fail(f"model.{key}", f"{value!r} is not a {kind}")
    if spec["tokenizer"] is not None and family != "mage":
        fail("model.tokenizer", f"applies to family 'mage' only, not {family!r}")
    return spec


def parse_config(raw: Any, source: str = "<config>") -> RunConfig:
    with naming(source):
        return _parse_config(raw, source)


def _parse_config(raw: Any, source: str) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the file must hold a mapping with keys {sorted(TOP_KEYS)}")
    check_keys("the file", raw, TOP_KEYS)
    model = raw.get("model")
    if isinstance(model, dict):
        model = _official_model(model)
    elif not isinstance(model, str) or not model:
        fail("model", f"must be 'demo' or a checkpoint path, or a mapping {{family, checkpoint, "
                               f"tokenizer, arch}}, got {model!r}")
    elif model != "demo" and not Path(model).is_file():
        fail("model", f"{model!r} is not a file (a checkpoint written by l2l-fast, or 'demo')")
    data = DataConfig.from_dict(raw.get("data"))
    options = raw.get("unlearn") or {}
    if not isinstance(options, dict):
        fail("unlearn", f"must be a mapping of UnlearnConfig fields, got {options!r}")
    check_keys("unlearn", options, UNLEARN_KEYS)
    output = raw.get("output")
    if output is not None and not isinstance(output, str):
        fail("output", f"must be a path, got {output!r}")
    by_default = output is not None and not {"checkpoint_dir", "resume_from"} & set(options)
    if by_default:
        options = {**options, "checkpoint_dir": default_checkpoint_dir(output)}
    try:
        unlearn = UnlearnConfig(**options)
    except ValueError as error:
        raise ValueError(f"unlearn.{error}") from error
    return RunConfig(model=model, data=data, unlearn=unlearn, output=output, source=source,
                     checkpoints_by_default=by_default)


def default_checkpoint_dir(output: str) -> str:
    """The run checkpoints' folder beside the output: unlearned.safetensors -> unlearned.checkpoints."""
    return str(Path(output).with_suffix(".checkpoints"))


def read_yaml(path, section: str) -> Any:
    """A YAML file's content; from a protocol file (keys run and eval), its `section`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if isinstance(raw, dict) and section in raw and set(raw) <= {"run", "eval"}:
        raw = raw[section]
    return raw


def load_config(path) -> RunConfig:
    """A run file; its paths are relative to it (cli/paths.py)."""
    return parse_config(relative_to_file(read_yaml(path, "run"), path, RUN_PATHS), str(path))

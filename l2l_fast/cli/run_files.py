"""Run files for `l2l-fast unlearn --config run.yaml`, validated with errors that
name the file and the key.

    model: demo                 # the shipped Fashion-MNIST MAE, or a checkpoint path, or an
                                # official one: {family: mae|mage|palette|hf-mae, checkpoint: PATH,
                                #                tokenizer: PATH (mage), arch: NAME} (l2l-fast import)
    data:
      dataset: fashion-mnist    # fashion-mnist | demo | folders
      root: null                # IDX folder (fashion-mnist) or class-folder root (folders)
      split: train              # fashion-mnist / demo
      class_list: null          # folders: one class folder name per line
      image_size: null          # folders: default the model's
      forget: [0, 1]            # classes (indices, or folder names for folders)
      retain: [2, 3, 4, 5]      # real retain classes, or a proxy set's classes
      per_class: null           # first N images of each class
      forget_indices: null      # individual samples to forget instead of classes
      forget_files: null        # folders: a file listing the images to forget (one path per line)
    unlearn:                    # any field of l2l_fast.UnlearnConfig
      steps: 300
      batch_size: 32
    output: unlearned.safetensors
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..data.splits import check_disjoint
from ..models import presets
from ..models.release import FAMILIES, MODEL_FAMILY
from ..unlearning.config import UnlearnConfig

TOP_KEYS = {"model", "data", "unlearn", "output"}
DATA_DEFAULTS = dict(dataset="fashion-mnist", root=None, split="train", class_list=None, image_size=None,
                     forget=None, retain=None, per_class=None, forget_indices=None, forget_files=None)
DATASETS = ("fashion-mnist", "demo", "folders")
SPLITS = ("train", "test")
# the data keys each dataset reads besides forget, retain, forget_indices and per_class
DATASET_KEYS = {"fashion-mnist": {"root", "split"}, "demo": {"split"},
                "folders": {"root", "class_list", "image_size", "forget_files"}}
UNLEARN_KEYS = [f.name for f in dataclasses.fields(UnlearnConfig)]
MODEL_KEYS = {"family", "checkpoint", "tokenizer", "arch"}


class ConfigError(ValueError):
    pass


@dataclass
class RunConfig:
    model: Union[str, dict]  # a path, "demo", or {family, checkpoint, tokenizer, arch}
    data: dict
    unlearn: UnlearnConfig
    output: Optional[str]
    source: str = field(default="<config>")


def _fail(source: str, key: str, message: str):
    raise ConfigError(f"{source}: {key} {message}")


def _check_keys(source: str, where: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        _fail(source, where, f"has unknown keys {unknown}; allowed: {sorted(allowed)}")


def _class_list(source, key, value, allow_names):
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        _fail(source, key, f"must be a non-empty list of classes, got {value!r}")
    for item in value:
        if isinstance(item, bool) or not (isinstance(item, int) or (allow_names and isinstance(item, str))):
            kinds = "class indices or folder names" if allow_names else "class indices"
            _fail(source, key, f"must list {kinds}, got {item!r}")
    return value


def _official_model(source: str, given: dict) -> dict:
    """model: {family, checkpoint, tokenizer, arch}, checked without loading anything."""
    _check_keys(source, "model", given, MODEL_KEYS)
    spec = {key: given.get(key) for key in sorted(MODEL_KEYS)}
    family = spec["family"]
    if family not in FAMILIES:
        _fail(source, "model.family", f"must be one of {FAMILIES}, got {family!r}")
    folder = family == "hf-mae"
    for key, kind in (("checkpoint", "folder" if folder else "file"), ("tokenizer", "file"), ("arch", "name")):
        value = spec[key]
        if value is None:
            if key == "checkpoint":
                _fail(source, "model.checkpoint", "is required: the release file (an HF folder for hf-mae)")
            continue
        if not isinstance(value, str) or not value:
            _fail(source, f"model.{key}", f"must be a {kind}, got {value!r}")
        if key == "arch":
            if folder:
                _fail(source, "model.arch", "does not apply to hf-mae (its folder's config.json is the architecture)")
            if Path(value).suffix in (".yaml", ".yml", ".json"):
                if not Path(value).is_file():
                    _fail(source, "model.arch", f"{value!r} is not a file")
            elif presets.ARCHS.get(value, (None,))[0] != MODEL_FAMILY[family]:
                known = sorted(k for k, (f, _) in presets.ARCHS.items() if f == MODEL_FAMILY[family])
                _fail(source, "model.arch", f"must be one of {known} or a YAML file, got {value!r}")
        elif not (Path(value).is_dir() if kind == "folder" else Path(value).is_file()):
            _fail(source, f"model.{key}", f"{value!r} is not a {kind}")
    if spec["tokenizer"] is not None and family != "mage":
        _fail(source, "model.tokenizer", f"applies to family 'mage' only, not {family!r}")
    return spec


def parse_data(source: str, given: Any) -> dict:
    """The checked `data:` section with defaults filled in (shared with eval files)."""
    given = given or {}
    if not isinstance(given, dict):
        _fail(source, "data", f"must be a mapping, got {given!r}")
    data = {**DATA_DEFAULTS, **given}
    _check_keys(source, "data", data, DATA_DEFAULTS)
    if data["dataset"] not in DATASETS:
        _fail(source, "data.dataset", f"must be one of {DATASETS}, got {data['dataset']!r}")
    ignored = sorted(k for k in given if k in set().union(*DATASET_KEYS.values()) - DATASET_KEYS[data["dataset"]])
    if ignored:
        _fail(source, "data", f"has keys {ignored} that dataset {data['dataset']!r} does not read")
    if data["dataset"] != "folders" and data["split"] not in SPLITS:
        _fail(source, "data.split", f"must be one of {SPLITS}, got {data['split']!r}")
    for key, kind in (("root", "folder"), ("class_list", "file"), ("forget_files", "file")):
        value = data[key]
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            _fail(source, f"data.{key}", f"must be a {kind} path, got {value!r}")
        if not (Path(value).is_dir() if kind == "folder" else Path(value).is_file()):
            _fail(source, f"data.{key}", f"{value!r} is not a {kind}")
    folders = data["dataset"] == "folders"
    if folders and (not data["root"] or not data["class_list"]):
        _fail(source, "data", "with dataset 'folders' needs root and class_list")
    data["forget"] = _class_list(source, "data.forget", data["forget"], folders)
    data["retain"] = _class_list(source, "data.retain", data["retain"], folders)
    if data["retain"] is None:
        _fail(source, "data.retain", "is required: the classes to keep (real or proxy)")
    indices = data["forget_indices"]
    chosen = [k for k in ("forget", "forget_indices", "forget_files") if data[k] is not None]
    if len(chosen) != 1:
        _fail(source, "data", "needs exactly one of forget (classes), forget_indices (samples) and "
                              f"forget_files (a file list), got {chosen or 'none'}")
    if indices is not None and (not isinstance(indices, list) or not indices or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)):
        _fail(source, "data.forget_indices", f"must be a non-empty list of sample indices (integers >= 0), "
                                             f"got {indices!r}")
    for key in ("per_class", "image_size"):
        if data[key] is not None and (isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 1):
            _fail(source, f"data.{key}", f"must be a positive integer, got {data[key]!r}")
    if data["forget"] is not None:
        try:
            check_disjoint(data["forget"], data["retain"])
        except ValueError as error:
            raise ConfigError(f"{source}: data.{error}: a class cannot be forgotten and kept") from error
    return data


def parse_config(raw: Any, source: str = "<config>") -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the file must hold a mapping with keys {sorted(TOP_KEYS)}")
    _check_keys(source, "the file", raw, TOP_KEYS)
    model = raw.get("model")
    if isinstance(model, dict):
        model = _official_model(source, model)
    elif not isinstance(model, str) or not model:
        _fail(source, "model", f"must be 'demo' or a checkpoint path, or a mapping {{family, checkpoint, "
                               f"tokenizer, arch}}, got {model!r}")
    elif model != "demo" and not Path(model).is_file():
        _fail(source, "model", f"{model!r} is not a file (a checkpoint written by l2l-fast, or 'demo')")
    data = parse_data(source, raw.get("data"))
    options = raw.get("unlearn") or {}
    if not isinstance(options, dict):
        _fail(source, "unlearn", f"must be a mapping of UnlearnConfig fields, got {options!r}")
    _check_keys(source, "unlearn", options, UNLEARN_KEYS)
    try:
        unlearn = UnlearnConfig(**options)
    except ValueError as error:
        raise ConfigError(f"{source}: unlearn.{error}") from error
    output = raw.get("output")
    if output is not None and not isinstance(output, str):
        _fail(source, "output", f"must be a path, got {output!r}")
    return RunConfig(model=model, data=data, unlearn=unlearn, output=output, source=source)


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
    return parse_config(read_yaml(path, "run"), str(path))

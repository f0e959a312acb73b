"""Paths in run and eval files are read relative to the file that names them (absolute ones,
'demo' and 'shipped' unchanged), so that a file runs the same from any folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DATA_PATHS = ("data.root", "data.class_list", "data.forget_files")
RUN_PATHS = ("model", "model.checkpoint", "model.tokenizer", "model.arch", *DATA_PATHS, "output",
             "unlearn.checkpoint_dir", "unlearn.cache_dir", "unlearn.resume_from")
EVAL_PATHS = ("models", *DATA_PATHS, "out", "metrics.inception", "metrics.clip", "metrics.classifier",
              "metrics.classifier_classes")
NAMES = {"demo", "shipped"}


def _split(key: str, value: str) -> tuple[str, str]:
    """(a prefix that is not a path, the path) of a value such as clip's 'MODEL:PATH'."""
    if key == "metrics.clip" and ":" in value:
        model, _, file = value.partition(":")
        return model + ":", file
    if key == "metrics.classifier" and value.startswith("timm:"):
        name, _, file = value[len("timm:"):].partition(":")
        return f"timm:{name}:", file
    return "", value


def _resolve(key: str, value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [_resolve(key, v, base) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(key, v, base) for k, v in value.items()}
    if not isinstance(value, str) or not value or value in NAMES:
        return value
    if key == "model.arch" and Path(value).suffix not in (".yaml", ".yml", ".json"):
        return value  # an architecture's name
    prefix, path = _split(key, value)
    if not path or Path(path).expanduser().is_absolute():
        return value
    return prefix + str(base / path)


def relative_to_file(raw: Any, path, keys: tuple[str, ...]) -> Any:
    """`raw` (a file's mapping) with the values at `keys` ('section.key') read from `path`'s folder."""
    if not isinstance(raw, dict):
        return raw  # the file's validation says what is wrong
    base, out = Path(path).parent, dict(raw)
    for key in keys:
        section, _, name = key.rpartition(".")
        holder = out if not section else out.get(section)
        if not isinstance(holder, dict) or name not in holder:
            continue
        if section:
            holder = out[section] = dict(holder)
        if key == "model" and isinstance(holder[name], dict):
            continue  # its keys are resolved as model.*
        holder[name] = _resolve(key, holder[name], base)
    return out

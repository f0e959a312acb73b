"""Eval files for `l2l-fast eval --config eval.yaml`: YAML read into an EvalConfig
(l2l_fast/evaluation/config.py: every key with its default, check and doc; `EvalConfig.docs()`),
validated before anything loads, with errors that name the file and the key.

    models: {Original: original.safetensors, Ours: unlearned.safetensors}  # or a list; 'demo' too
    data: {dataset: folders, root: imagenet/val, class_list: examples/imagenet_classes.txt,
           forget: [...], retain: [...], per_class: 50}        # DataConfig, as in run files
    mask: inpaint:4                                            # or a list of masks: one table each
    sampler: {vq: {iterations: 20, temperature: 6.0}}
    metrics: {inception: pt_inception-2015-12-05.pth, clip: ViT-H-14:open_clip_pytorch_model.bin}
    out: results/
"""
from __future__ import annotations

from typing import Any

from ..evaluation.config import EvalConfig
from ..training.options import check_keys, options
from .paths import EVAL_PATHS, relative_to_file
from .run_files import ConfigError, naming, read_yaml

REQUIRED = ("models", "data", "out")


def parse_eval_config(raw: Any, source: str = "<config>") -> EvalConfig:
    with naming(source):
        if isinstance(raw, dict):
            check_keys("the file", raw, [f.name for f in options(EvalConfig)])
            for key in REQUIRED:
                if raw.get(key) is None:
                    raise ConfigError(f"{source}: {key} is required")
            raw = {**raw, "sampler": raw.get("sampler") or {}}  # a file's empty sampler: the families' defaults
        return EvalConfig.from_dict(raw, source)


def load_eval_config(path) -> EvalConfig:
    """An eval file; its paths are relative to it (cli/paths.py)."""
    return parse_eval_config(relative_to_file(read_yaml(path, "eval"), path, EVAL_PATHS), str(path))

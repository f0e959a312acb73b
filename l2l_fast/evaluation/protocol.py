"""The paper's evaluation protocol over any number of models: for each mask and model,
generate the forget ("F") and retain ("R") sets batch by batch, run every feature network
over the generated images, and compute FID / IS / CLIP / accuracy against the real images.

- The real images' network outputs are computed once per (set, network) and reused by
  every row and mask (kept on disk in `out/features/`, so a rerun reuses them too).
- Each (mask, model) row is written atomically to `out/rows/` when it finishes; a rerun
  with the same settings reuses finished rows, so an interrupted evaluation continues.
- A metric whose network was not given is reported as skipped (None), with the reason.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import read, save_tensors, write_text
from ..models.masks import parse_mask
from .metrics import frechet_distance, inception_score, mean_cosine
from .plots import with_grey_hole
from .sampling import sampler_for


def digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class EvalSet:
    """The real images of one set, as a tensor or a dataset of (image, label) items.

    Labels are the classifier's class indices (`label_map` maps a dataset's own labels)."""

    key: str
    fingerprint: str
    images: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    dataset: Optional[torch.utils.data.Dataset] = None
    label_map: Optional[torch.Tensor] = None
    bad_files: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.dataset)

    def batches(self, batch_size: int, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.images is not None:
            yield from zip(self.images.split(batch_size), self.labels.split(batch_size))
            return
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
        for images, labels in loader:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            yield images.float(), (self.label_map[labels] if self.label_map is not None else labels)


def tensor_set(key: str, images: torch.Tensor, labels: torch.Tensor, classes, per_class: Optional[int],
               fingerprint: str) -> EvalSet:
    """The images of `classes`, class by class in that order (the first `per_class` of each)."""
    index = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in classes])
    if index.numel() == 0:
        raise ValueError(f"no images of classes {list(classes)} in this set")
    return EvalSet(key, fingerprint, images=images[index], labels=labels[index])


@dataclass
class Run:
    """What every row shares: the sets, the feature networks and which output each metric reads."""

    sets: list[EvalSet]
    networks: dict[str, nn.Module]            # kind -> module returning {output: [B, D]}
    sources: dict[str, Optional[tuple[str, str]]]   # metric -> (kind, output) or None (skipped)
    skipped: dict[str, str]                   # metric -> why it is skipped
    out: Path
    seed: int = 0
    batch_size: int = 64
    workers: int = 0
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    is_splits: int = 10
    grid_count: int = 6
    tsne_per_group: int = 300
    progress: bool = True
    network_specs: dict[str, str] = field(default_factory=dict)
    real: dict = field(default_factory=dict)   # (set fingerprint, kind) -> {output: tensor}
    times: dict[str, float] = field(default_factory=dict)


def _autocast(run: Run):
    if run.precision == "bf16":
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


def _load_real(run: Run, eval_set: EvalSet, kind: str) -> bool:
    """Real outputs from memory or, with the same fingerprint, from disk."""
    if (eval_set.fingerprint, kind) in run.real:
        return True
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


def _set_metrics(key: str, run: Run, real: dict, fake: dict, labels: torch.Tensor, row: dict) -> None:
    for metric, source in run.sources.items():
        name = f"{metric}_{key}"
        if source is None:
            row["metrics"][name] = None
            row["skipped"][name] = run.skipped[metric]
            continue
        kind, output = source
        generated = fake[kind][output]
        if metric == "FID":
            row["metrics"][name] = frechet_distance(real[kind][output], generated, nn.Identity())
        elif metric == "IS":
            splits = min(run.is_splits, generated.shape[0])
            row["metrics"][name] = inception_score(generated, nn.Identity(), splits=splits, seed=run.seed)[0]
        elif metric == "CLIP":
            row["metrics"][name] = mean_cosine(generated, real[kind][output])
        elif metric == "acc":
            correct = generated.argmax(dim=1) == labels
            row["metrics"][name] = float(correct.double().mean())
            row["metrics"][f"per_class_{key}"] = {
                str(c): float(correct[labels == c].double().mean()) for c in labels.unique().tolist()}


def evaluate_row(name: str, adapter, mask: str, sampler: dict, run: Run) -> tuple[dict, dict[str, torch.Tensor]]:
    """One model under one mask: (row, tensors kept for the plots)."""
    spec = parse_mask(mask)
    sample = sampler_for(adapter, sampler, seed=run.seed)
    model = adapter.model
    was_training = model.training
    model.eval()
    row = {"method": name, "metrics": {}, "skipped": {}, "times": {}}
    keep: dict[str, torch.Tensor] = {}
    embed = run.sources.get("CLIP")
    try:
        for eval_set in run.sets:
            missing = [kind for kind in run.networks if not _load_real(run, eval_set, kind)]
            generator = torch.Generator().manual_seed(run.seed)
            fake_parts = {kind: {} for kind in run.networks}
            real_parts = {kind: {} for kind in missing}
            labels, picked, generated = [], _spread(run.grid_count, len(eval_set)), []
            times = {"generate": 0.0, "features": 0.0, "real_features": 0.0}
            start = 0
            bar = tqdm(total=len(eval_set), unit="img", disable=not run.progress,
                       desc=f"{name} {mask} {eval_set.key}: generate + features")
            for batch, (images, batch_labels) in enumerate(eval_set.batches(run.batch_size, run.workers)):
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
                inside = picked[(picked >= start) & (picked < start + images.shape[0])] - start
                if inside.numel():
                    visible = adapter.pixel_keep(corruption)[inside].cpu()
                    generated.append((images[inside], with_grey_hole(images[inside], visible), fake[inside].cpu()))
                labels.append(batch_labels)
                start += images.shape[0]
                bar.update(images.shape[0])
            bar.close()
            for kind in missing:
                outputs = _cat(real_parts[kind])
                run.real[eval_set.fingerprint, kind] = outputs
                save_tensors(outputs, {"fingerprint": [eval_set.fingerprint, run.network_specs.get(kind)]},
                             _real_path(run, eval_set, kind))
            if missing:
                run.times[f"real_features_{eval_set.key}"] = times["real_features"]
            fake = {kind: _cat(parts) for kind, parts in fake_parts.items()}
            real = {kind: run.real[eval_set.fingerprint, kind] for kind in run.networks}
            tick = time.perf_counter()
            _set_metrics(eval_set.key, run, real, fake, torch.cat(labels), row)
            row["times"].update({f"generate_{eval_set.key}": times["generate"],
                                 f"features_{eval_set.key}": times["features"],
                                 f"metrics_{eval_set.key}": time.perf_counter() - tick})
            spent = max(times["generate"] + times["features"], 1e-9)
            row["times"][f"images_per_s_{eval_set.key}"] = len(eval_set) / spent
            for part, name_ in enumerate(("truth", "input", "generated") if generated else ()):
                keep[f"grid_{eval_set.key}_{name_}"] = torch.cat([g[part] for g in generated])
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


def evaluate_models(models: dict[str, tuple[Callable[[], Any], str]], masks: list[str], samplers: dict,
                    run: Run, settings: Any = None) -> dict[str, list[tuple[dict, dict]]]:
    """models: name -> (load the adapter, fingerprint of the model file). Returns
    {mask: [(row, plot tensors)]}, reusing rows finished earlier with the same settings."""
    results = {}
    for mask in masks:
        rows = []
        for name, (load, model_fingerprint) in models.items():
            fingerprint = digest([settings, mask, model_fingerprint, name])
            json_path, plots_path = row_paths(run, mask, name)
            if json_path.is_file() and plots_path.is_file():
                saved = json.loads(json_path.read_text())
                if saved.get("fingerprint") == fingerprint:
                    if run.progress:
                        print(f"{name} {mask}: reusing the finished row in {json_path}")
                    rows.append((saved["row"], read(plots_path)[0]))
                    continue
            tick = time.perf_counter()
            adapter = load()
            load_time = time.perf_counter() - tick
            family = getattr(adapter.model, "family", None)
            row, keep = evaluate_row(name, adapter, mask, samplers.get(family, {}), run)
            row["times"]["load"] = load_time
            del adapter
            save_tensors(keep, {"mask": mask, "method": name}, plots_path)
            write_text(json.dumps({"fingerprint": fingerprint, "row": row}, indent=2), json_path)
            rows.append((row, keep))
        results[mask] = rows
    return results

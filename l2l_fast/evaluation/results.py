"""results.json, the grids and the t-SNE plots of an evaluation, from its finished rows."""
from __future__ import annotations

import json
from typing import Optional
from pathlib import Path

import torch

from ..training.files import write_text
from .plots import save_grid
from .metrics import tsne_plot

SET_NAMES = {"F": "forget", "R": "retain"}


def _slug(mask: str) -> str:
    return mask.replace(":", "_")


def grid_rows(rows: list[tuple[dict, dict]], per_set: int = 3,
              class_names: Optional[dict[str, str]] = None) -> list[tuple[str, torch.Tensor]]:
    """One picture row per example image: ground truth, input, then each method's output; a row
    is labelled with its image's class name where `class_names` (label -> name) has it."""
    first = rows[0][1]
    pictures = []
    for key in ("F", "R"):
        if f"grid_{key}_truth" not in first:
            continue
        for i in range(min(per_set, first[f"grid_{key}_truth"].shape[0])):
            cells = [first[f"grid_{key}_truth"][i], first[f"grid_{key}_input"][i]]
            cells += [keep[f"grid_{key}_generated"][i] for _, keep in rows]
            label = first.get(f"grid_{key}_label")
            name = (class_names or {}).get(str(int(label[i]))) if label is not None else None
            pictures.append((f"{SET_NAMES[key]}\n{name}" if name else f"{SET_NAMES[key]} {i}", torch.stack(cells)))
    return pictures


def tsne_groups(rows: list[tuple[dict, dict]]) -> dict[str, torch.Tensor]:
    groups = {}
    first = rows[0][1]
    for key in ("F", "R"):
        if f"tsne_real_{key}" in first:
            groups[f"ground truth {SET_NAMES[key]}"] = first[f"tsne_real_{key}"]
    for row, keep in rows:
        for key in ("F", "R"):
            if f"tsne_{key}" in keep:
                groups[f"{row['method']} {SET_NAMES[key]}"] = keep[f"tsne_{key}"]
    return groups


def write_results(out: Path, results: dict[str, list[tuple[dict, dict]]], *, title: str, notes: list[str],
                  config: dict, times: dict, tsne_title: str, plots: bool = True, seed: int = 0,
                  class_names: Optional[dict[str, str]] = None, networks: Optional[dict] = None) -> Path:
    tables = []
    for mask, rows in results.items():
        table = {"name": mask, "rows": [row for row, _ in rows]}
        if plots and rows:
            pictures = grid_rows(rows, class_names=class_names)
            if pictures:
                columns = ["ground truth", "input", *(row["method"] for row, _ in rows)]
                table["grid"] = save_grid(out / f"grid_{_slug(mask)}.png", pictures, columns).name
            groups = tsne_groups(rows)
            if groups and sum(g.shape[0] for g in groups.values()) >= 3:
                table["tsne"] = tsne_plot(groups, out / f"tsne_{_slug(mask)}.png", seed=seed, title=tsne_title).name
                table["tsne_title"] = f"T-SNE of {tsne_title}"
        tables.append(table)
    document = {"title": title, "notes": notes, "config": config, "times": times, "tables": tables,
                **({"class_names": class_names} if class_names else {})}
    if networks:
        document["networks"] = networks  # kind -> {network, spec, file, sha256}
    return write_text(json.dumps(document, indent=2), out / "results.json")

"""A 2-D t-SNE scatter of feature groups (e.g. forget/retain × original/unlearned)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from ...training.files import save_figure


def tsne_plot(
    groups: dict[str, torch.Tensor], path, *, seed: int = 0, perplexity: float = 30.0, title: str = ""
) -> Path:
    """Embed all groups' features [N_g, ...] together with t-SNE (seeded) and save one
    colour per group to `path` (format from its suffix). Returns the path."""
    if not groups or any(not torch.is_tensor(f) or f.ndim < 1 or f.shape[0] == 0 for f in groups.values()):
        raise ValueError("groups must map names to non-empty feature tensors [N, ...]")
    arrays = [f.detach().reshape(f.shape[0], -1).double().cpu().numpy() for f in groups.values()]
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"groups differ in feature size: { {k: a.shape[1] for k, a in zip(groups, arrays)} }")
    points = np.concatenate(arrays)
    if points.shape[0] < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {points.shape[0]}")
    tsne = TSNE(n_components=2, perplexity=min(perplexity, points.shape[0] - 1), init="pca", random_state=seed)
    embedded = tsne.fit_transform(points)

    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    start = 0
    for index, (name, array) in enumerate(zip(groups, arrays)):
        stop = start + array.shape[0]
        axes.scatter(*embedded[start:stop].T, s=6, color=f"C{index % 10}", label=name, alpha=0.7)
        start = stop
    axes.legend(markerscale=3)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return save_figure(figure, Path(path), dpi=150)

"""Pictures: image grids and loss curves (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..training.files import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def with_grey_hole(images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The corrupted input as a person sees it: the hole shown in mid grey."""
    return images * visible + 0.5 * (1 - visible)


@torch.no_grad()
def save_grid(path: Path, rows: list[tuple[str, torch.Tensor]], columns: Sequence[str]) -> Path:
    """rows: (label, [len(columns), C, H, W] images in [0, 1], C = 1 or 3); one picture per cell."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.4 * len(columns), 1.4 * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r][c]
            picture = image.clamp(0, 1).cpu()
            if picture.shape[0] == 1:
                ax.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(picture.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def loss_curves(path: Path, curves: dict[str, list[dict]], keys: Sequence[str] = ("retain", "forget")) -> Path:
    """One panel per key (e.g. the retain and forget terms), one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, records in curves.items():
            values = [r[key] for r in records]
            window = max(1, len(values) // 30)
            smooth = torch.tensor(values).unfold(0, window, 1).mean(1) if len(values) >= window else torch.tensor(values)
            ax.plot(range(window - 1, window - 1 + len(smooth)), smooth.tolist(), label=name)
        ax.set_title(f"{key} term")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path

"""CLIP-style similarity: the mean cosine between the embedding of each generated
image and that of its own ground truth, with any embedder."""
from __future__ import annotations

import os
from itertools import zip_longest
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._features import Images, Rows, batches, evaluating

OPEN_CLIP_EXTRA = "pip install open_clip_torch"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def pair_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a[i], b[i]) for each row, float64 [N]; rows are flattened."""
    return F.cosine_similarity(a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double(), dim=1)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over rows of cos(a[i], b[i]), in float64."""
    if a.shape != b.shape or a.ndim < 1 or a.shape[0] == 0:
        raise ValueError(
            f"expected two embeddings [N, ...] of one shape with N >= 1, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return float(pair_cosines(a, b).mean())


def clip_similarity(generated: Images, truth: Images, embedder: nn.Module, *, batch_size: int = 256) -> float:
    """Mean cosine between embedder(generated[i]) and embedder(truth[i]).

    `generated` and `truth` are paired tensors [N, C, H, W] or paired iterables of batches.
    """
    embed = Rows(embedder, "embedder")
    total, count = 0.0, 0
    with evaluating(embedder):
        for fake, real in zip_longest(batches(generated, batch_size), batches(truth, batch_size)):
            if fake is None or real is None or fake.shape[0] != real.shape[0]:
                raise ValueError("generated and truth must hold the same number of images, paired in order")
            total += float(pair_cosines(embed(fake), embed(real)).sum())
            count += fake.shape[0]
    if count == 0:
        raise ValueError("no images given")
    return total / count


class _ClipImages(nn.Module):
    """Images in [0, 1] (grey or RGB, any size) → CLIP image embeddings."""

    def __init__(self, model: nn.Module, size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected grey or RGB images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        scale = self.size / min(height, width)
        resized = (max(self.size, round(height * scale)), max(self.size, round(width * scale)))
        x = F.interpolate(images.float(), size=resized, mode="bicubic", align_corners=False, antialias=True)
        top, left = (resized[0] - self.size) // 2, (resized[1] - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size].clamp(0, 1).expand(-1, 3, -1, -1)
        return self.model.encode_image((x - self.mean) / self.std)


def open_clip_embedder(
    pretrained: Union[str, os.PathLike], model_name: str = "ViT-B-32", device: Optional[str] = None
) -> nn.Module:
    """An OpenCLIP image encoder as an embedder for `clip_similarity`.

    `pretrained` is a local checkpoint path or an OpenCLIP tag (a tag downloads on this call).
    Needs the optional extra open_clip_torch.
    """
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(f"open_clip_embedder needs OpenCLIP: `{OPEN_CLIP_EXTRA}`") from error
    model = open_clip.create_model(model_name, pretrained=str(pretrained), device=device or "cpu")
    visual = model.visual
    size = getattr(visual, "image_size", 224)
    size = size if isinstance(size, int) else min(size)
    mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
    std = getattr(visual, "image_std", None) or OPENAI_STD
    return _ClipImages(model, size, mean, std).to(device or "cpu").eval()

"""FID and Inception Score through torchmetrics, with any feature network.

`features` maps images [N, C, H, W] in [0, 1] to features [N, D] (FID); `classifier`
maps them to logits [N, K] (IS). Statistics are accumulated in float64.
"""
from __future__ import annotations

import warnings
from itertools import chain
from typing import Optional

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.inception import InceptionScore
from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

from ._features import Images, Rows, batches, evaluating

INCEPTION_EXTRA = "pip install torch-fidelity"


class _Sized(Rows):
    """Rows with the `num_features` torchmetrics reads instead of probing a 299x299 RGB image."""

    def __init__(self, network: nn.Module, num_features: int, name: str):
        super().__init__(network, name)
        self.num_features = num_features


def frechet_distance(real: Images, fake: Images, features: nn.Module, *, batch_size: int = 256) -> float:
    """Fréchet distance between the feature statistics of `real` and `fake` images.

    `real` and `fake` are tensors [N, ...] or iterables of batches (N >= 2 each).
    """
    real_batches = batches(real, batch_size)
    first = next(real_batches, None)
    if first is None:
        raise ValueError("no real images given")
    probe = Rows(features, "features")
    with evaluating(features):
        dim = probe(first[:1]).shape[1]
        metric = FrechetInceptionDistance(feature=_Sized(features, dim, "features"))
        for batch in chain([first], real_batches):
            metric.update(batch, real=True)
        for batch in batches(fake, batch_size):
            metric.update(batch, real=False)
        if metric.real_features_num_samples < 2 or metric.fake_features_num_samples < 2:
            raise ValueError(
                f"FID needs at least 2 real and 2 fake images, got {int(metric.real_features_num_samples)} "
                f"and {int(metric.fake_features_num_samples)}"
            )
        return float(metric.compute())


def inception_score(
    images: Images, classifier: nn.Module, *, splits: int = 10, batch_size: int = 256, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) over `splits` of exp E[KL(p(y|x) || p(y))] of the classifier's softmax.

    Images are shuffled into splits with `seed` (not the global generator); std is nan
    with one split.
    """
    if splits < 1:
        raise ValueError(f"splits must be positive, got {splits}")
    logits = Rows(classifier, "classifier")
    with evaluating(classifier), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")
        metric = InceptionScore(feature=logits, splits=splits)
        count = 0
        for batch in batches(images, batch_size):
            metric.update(batch)
            count += batch.shape[0]
        if count < splits:
            raise ValueError(f"Inception Score needs at least one image per split: {count} images, {splits} splits")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = metric.compute()
    return float(mean), float(std)


class _InceptionPool(nn.Module):
    """Images in [0, 1] (grey or RGB) → uint8 RGB → InceptionV3 pool features [N, 2048]."""

    num_features = 2048

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected grey or RGB images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1)
        return self.inception(images.clamp(0, 1).mul(255).round().to(torch.uint8))


def inception_features(weights_path: Optional[str] = None) -> nn.Module:
    """torchmetrics' InceptionV3 (the standard FID network) as a feature network.

    Needs the optional extra torch-fidelity (which brings torchvision). Without
    `weights_path`, torch-fidelity downloads its weights on this call.
    """
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ImportError(
            f"inception_features needs torch-fidelity: `{INCEPTION_EXTRA}` "
            f"(or pass any feature network of your own to frechet_distance)"
        )
    inception = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights_path
    )
    return _InceptionPool(inception)

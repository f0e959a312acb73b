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


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], covariance [D, D]) of features [N, D] (N >= 2), in float64, unbiased (N - 1)."""
    features = features.reshape(features.shape[0], -1).double()
    if features.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {features.shape[0]}")
    mean = features.mean(dim=0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def _trace_sqrt_product(a: torch.Tensor, b: torch.Tensor, cov_a: torch.Tensor, cov_b: torch.Tensor,
                        gram: bool) -> torch.Tensor:
    """tr((S_a S_b)^1/2). gram: the nuclear norm of A B^T / sqrt((N_a - 1)(N_b - 1)), A and B the
    centred features (the eigenvalues of S_a S_b are the squared singular values of that N_a x N_b
    matrix); else via the symmetric S_a^1/2 S_b S_a^1/2 (D x D)."""
    if gram:
        cross = (a - a.mean(0)) @ (b - b.mean(0)).T
        return torch.linalg.svdvals(cross).sum() / ((a.shape[0] - 1) * (b.shape[0] - 1)) ** 0.5
    root = _psd_sqrt(cov_a)
    middle = root @ cov_b @ root
    return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()


def fid_from_features(a: torch.Tensor, b: torch.Tensor, *, gram: Optional[bool] = None) -> float:
    """Fréchet distance between two feature sets [N, D]: |mu_a - mu_b|^2 + tr(S_a) + tr(S_b)
    - 2 tr((S_a S_b)^1/2), in float64. The trace is exact for the singular covariances of fewer
    images than features; it is computed on the smaller side (gram None: N x N when
    min(N_a, N_b) < D, else D x D)."""
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    mean_a, cov_a = feature_statistics(a)
    mean_b, cov_b = feature_statistics(b)
    gram = min(a.shape[0], b.shape[0]) < a.shape[1] if gram is None else gram
    trace = _trace_sqrt_product(a, b, cov_a, cov_b, gram)
    return float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace)


def kid_from_features(a: torch.Tensor, b: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018) as clean-fid and torch-fidelity compute it:
    the unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3, averaged over `subsets` random
    subsets of m = min(N_a, N_b, subset_size) images of each set (drawn with `seed`).
    Returns (mean, std over subsets). With N_a = N_b <= subset_size every subset is the whole set."""
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    m = min(a.shape[0], b.shape[0], subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {a.shape[0]} and {b.shape[0]}")
    dim = a.shape[1]
    if m == a.shape[0] == b.shape[0]:
        subsets = 1  # every subset is the whole of both sets: the same value each time
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=generator)[:m]]
        y = b[torch.randperm(b.shape[0], generator=generator)[:m]]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        same = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(same - 2 * kxy.sum() / (m * m))
    values = torch.stack(values)
    return float(values.mean()), float(values.std(unbiased=False))

import importlib.util
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from l2l_fast.data import fashion_mnist
from l2l_fast.data.fashion_mnist import DEFAULT_ROOT
from l2l_fast.evaluation.metrics import (
    FASHION_CLASSIFIER, FashionClassifier, Features, accuracy, clip_similarity, frechet_distance, inception_features,
    inception_score, load_classifier, mean_cosine, open_clip_embedder, per_class_accuracy, save_classifier,
    train_classifier, tsne_plot,
)


class Flatten(nn.Module):
    """Each "image" [C, H, W] is its own feature vector."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x.flatten(1)


def gaussian_images(n, mean, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=generator, dtype=torch.float64)
    return (z @ torch.as_tensor(scale, dtype=torch.float64).T + torch.as_tensor(mean)).view(n, -1, 1, 1)


def closed_form_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_fid_of_identical_sets_is_zero():
    x = gaussian_images(300, [0.0] * 6, np.eye(6), seed=0)
    assert abs(frechet_distance(x, x.clone(), Flatten(), batch_size=64)) < 1e-8


def test_fid_matches_closed_form():
    rng = np.random.default_rng(0)
    real = gaussian_images(400, [0.0, 1.0, -2.0, 0.5, 3.0], rng.normal(size=(5, 5)), seed=1)
    fake = gaussian_images(300, [1.0, 0.0, -1.0, 0.0, 2.0], rng.normal(size=(5, 5)), seed=2)
    expected = closed_form_fid(real.flatten(1).numpy(), fake.flatten(1).numpy())
    assert expected > 1.0
    got = frechet_distance(real, fake, Flatten(), batch_size=37)
    assert math.isclose(got, expected, rel_tol=1e-9)
    batched = frechet_distance(iter(real.split(50)), [fake[:120], fake[120:]], Flatten())
    assert math.isclose(batched, expected, rel_tol=1e-9)


def test_metrics_run_networks_in_eval_mode_and_restore_them():
    network = Flatten().train()
    x = gaussian_images(20, [0.0] * 3, np.eye(3), seed=0)
    frechet_distance(x, x, network, batch_size=8)
    inception_score(x, network, splits=2)
    clip_similarity(x, x, network)
    assert network.training and network.modes and not any(network.modes)


def test_fid_rejects_bad_inputs():
    x = gaussian_images(10, [0.0] * 3, np.eye(3), seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(x, x[:1], Flatten())
    with pytest.raises(ValueError, match="no real images"):
        frechet_distance([], x, Flatten())
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(x, x.log(), Flatten())
    with pytest.raises(TypeError, match="nn.Module"):
        frechet_distance(x, x, lambda t: t.flatten(1))


def test_inception_score_of_uniform_predictions_is_one():
    mean, _ = inception_score(torch.zeros(60, 7), Flatten(), splits=3)
    assert math.isclose(mean, 1.0, rel_tol=1e-12)


def test_inception_score_of_one_hot_predictions_over_k_classes_is_k():
    logits = 100.0 * torch.eye(7, dtype=torch.float64).repeat(10, 1)
    mean, std = inception_score(logits, Flatten(), splits=1, batch_size=16)
    assert math.isclose(mean, 7.0, rel_tol=1e-9) and math.isnan(std)


def numpy_inception_score(logits: torch.Tensor, splits: int, seed: int) -> tuple[float, float]:
    """IS = exp(mean_x KL(p(y|x) || p(y))) per split, p(y) the split's mean; (mean, unbiased std)
    over the splits. Rows shuffled by torch.randperm seeded with `seed`, then cut as torch.chunk
    cuts: ceil(N / splits) rows per split, the last one shorter."""
    order = torch.randperm(len(logits), generator=torch.Generator().manual_seed(seed)).numpy()
    x = logits.numpy().astype(np.float64)[order]
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    size = -(-len(x) // splits)
    scores = []
    for start in range(0, len(x), size):
        q = p[start:start + size]
        kl = (q * (np.log(q) - np.log(q.mean(0, keepdims=True)))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan


@pytest.mark.parametrize("splits, seed", [(10, 3), (7, 3), (7, 4)])
def test_inception_score_is_numpys_on_the_same_logits_split_by_the_seed(splits, seed):
    """103 rows: 7 splits of 15 rows and one of 13, not numpy's array_split (15 x 5, 14 x 2)."""
    logits = 2 * torch.randn(103, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, std = inception_score(logits, Flatten(), splits=splits, seed=seed, batch_size=16)
    expected_mean, expected_std = numpy_inception_score(logits, splits, seed)
    # measured: |difference| <= 4.4e-16 (float64 on both sides); another seed moves the mean by
    # ~1% and the std by 15-40%, a biased std moves it by 5%: 1e-12 relative guards both
    assert mean == pytest.approx(expected_mean, rel=1e-12)
    assert std == pytest.approx(expected_std, rel=1e-12)
    other_mean, other_std = numpy_inception_score(logits, splits, seed + 1)
    assert abs(mean - other_mean) > 1e-3 and abs(std - other_std) > 1e-2
    with pytest.raises(ValueError, match="split"):
        inception_score(logits[:4], Flatten(), splits=10)


def test_mean_cosine_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    assert mean_cosine(a, a * 5) == pytest.approx(1.0)
    assert mean_cosine(a, torch.stack([-a[:, 1], a[:, 0]], dim=1)) == pytest.approx(0.0, abs=1e-12)
    assert mean_cosine(a, -a) == pytest.approx(-1.0)
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-3.0, -4.0]])
    assert mean_cosine(a, b) == pytest.approx((1.0 + 1.0 / math.sqrt(2.0) - 1.0) / 3.0)


def test_clip_similarity_embeds_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]).view(3, 2, 1, 1)
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-3.0, -4.0]]).view(3, 2, 1, 1)
    expected = (1.0 + 1.0 / math.sqrt(2.0) - 1.0) / 3.0
    assert clip_similarity(a, b, Flatten(), batch_size=2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same number"):
        clip_similarity(a, b[:2], Flatten())


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed")
def test_open_clip_embedder_names_the_extra():
    with pytest.raises(ImportError, match="pip install open_clip_torch"):
        open_clip_embedder("weights.bin")


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_inception_features_names_the_extra():
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        inception_features()


class ByValue(nn.Module):
    """Predicts the class written in the single pixel of each image."""

    def forward(self, x):
        return nn.functional.one_hot(x.flatten().long(), 3).float()


def test_per_class_accuracy_by_hand():
    predicted = torch.tensor([0, 0, 1, 0, 2, 0, 0], dtype=torch.float32).view(7, 1, 1, 1)
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 2])
    assert per_class_accuracy(ByValue(), predicted, labels, batch_size=3) == {0: 1.0, 1: 0.25, 2: 0.0}
    assert accuracy(ByValue(), predicted, labels) == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="labels"):
        per_class_accuracy(ByValue(), predicted, labels[:3])


def test_classifier_shapes_and_roundtrip(tmp_path):
    model = FashionClassifier(width=8, feature_dim=32).eval()
    x = torch.rand(5, 1, 28, 28)
    assert model.features(x).shape == (5, 32) and model(x).shape == (5, 10)
    assert Features(model)(x).shape == (5, 32)
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(5, 3, 28, 28))
    path = save_classifier(model, tmp_path / "c.safetensors", {"note": "test"})
    loaded = load_classifier(path)
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_load_classifier_rejects_other_families(tmp_path):
    from l2l_fast.training.files import save_tensors

    path = save_tensors({"w": torch.zeros(1)}, {"family": "mae", "config": {}}, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="not a classifier"):
        load_classifier(path)


def test_train_classifier_is_seeded():
    images, labels = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = FashionClassifier(width=4, feature_dim=8)
        runs.append(train_classifier(model, images, labels, steps=3, batch_size=8, seed=1, progress=False))
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="labels"):
        train_classifier(model, images, labels + 5, steps=1, progress=False)


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_classifier_learns_fashion_mnist():
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    torch.manual_seed(0)
    model = FashionClassifier(width=16)
    train_classifier(model, x[:2000], y[:2000], steps=250, batch_size=64, seed=0, progress=False)
    assert accuracy(model, xt[:2000], yt[:2000]) > 0.70


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.skipif(not FASHION_CLASSIFIER.is_file(), reason="packaged classifier not built")
def test_packaged_classifier():
    xt, yt = fashion_mnist("test")
    model = load_classifier()
    assert accuracy(model, xt[:2000], yt[:2000]) > 0.88


def test_tsne_plot_writes_png(tmp_path):
    generator = torch.Generator().manual_seed(0)
    groups = {name: torch.randn(15, 8, generator=generator) + i for i, name in enumerate(["a", "b", "c", "d"])}
    path = tsne_plot(groups, tmp_path / "plots" / "tsne.png", perplexity=10, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="feature size"):
        tsne_plot({"a": torch.zeros(5, 2), "b": torch.zeros(5, 3)}, tmp_path / "x.png")

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from l2l_fast.data import fashion_mnist, split_by_class
from l2l_fast.data.fashion_mnist import DEFAULT_ROOT


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def fake_root(tmp_path: Path, n: int = 5, compress: bool = True) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress)
    return tmp_path, images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files(tmp_path, compress):
    root, images, labels = fake_root(tmp_path, compress=compress)
    x, y = fashion_mnist("test", root=root)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()


def test_missing_root_names_package_and_argument(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist("train", root=tmp_path / "nowhere")
    assert "dataset-fashion-mnist" in str(info.value) and "root=" in str(info.value)


def test_missing_file_names_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        fashion_mnist("train", root=tmp_path)


def test_truncated_file_is_reported(tmp_path):
    root, _, _ = fake_root(tmp_path)
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "rb") as handle:
        data = handle.read()
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist("test", root=root)


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation")


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    x, y = fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28)
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [1000] * 10


def test_split_by_class():
    images = torch.arange(12.0).reshape(12, 1, 1, 1)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
    split = split_by_class(images, labels, forget=[0], retain=[1, 2], proxy=[3])
    assert split.forget[0].flatten().tolist() == [0, 4, 8]
    assert split.retain[1].tolist() == [1, 2, 1, 2, 1, 2]
    assert split.proxy[0].flatten().tolist() == [3, 7, 11]
    limited = split_by_class(images, labels, forget=[0], retain=[1, 2], per_class=1)
    assert limited.retain[0].flatten().tolist() == [1, 2] and limited.proxy is None


def test_split_rejects_overlap_and_empty():
    labels = torch.tensor([0, 1, 2])
    images = torch.zeros(3, 1, 1, 1)
    with pytest.raises(ValueError, match="retain"):
        split_by_class(images, labels, forget=[0], retain=[0, 1])
    with pytest.raises(ValueError, match="forget"):
        split_by_class(images, labels, forget=[7], retain=[1])

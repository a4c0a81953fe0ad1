"""Fashion-MNIST reader and datamodule (needs the Debian package dataset-fashion-mnist)."""
import gzip

import numpy as np
import pytest
import torch

from lightning_mcuprune.data import datasets
from lightning_mcuprune.data.datasets import FashionMNISTDataModule, load_fashion_mnist, read_idx

pytestmark = pytest.mark.skipif(
    not (datasets.data_dir() / datasets.FILES["test"][0]).is_file(),
    reason="Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")


@pytest.fixture(scope="module")
def train():
    return load_fashion_mnist("train")


def test_counts_shapes_and_labels(train):
    images, labels = train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    test_images, test_labels = load_fashion_mnist("test")
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    for lab in (labels, test_labels):
        assert lab.min() == 0 and lab.max() == 9
        assert set(np.unique(lab).tolist()) == set(range(10))
    assert np.bincount(labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced


def test_normalisation(train):
    sample = train[0][::10].astype(np.float32) / 255  # every 10th training image
    assert abs(sample.mean() - datasets.MEAN) < 5e-3 and abs(sample.std() - datasets.STD) < 5e-3
    x, y = datasets.to_tensors(*load_fashion_mnist("test"))
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02  # test set, train statistics


def test_datamodule_loaders():
    dm = FashionMNISTDataModule(batch_size=32, train_subset=1000, val_size=500, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) == 1000 and len(dm.val_set) == 500 and len(dm.test_set) == 10000
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 9
    xt, _ = next(iter(dm.test_dataloader()))
    assert xt.shape == (32, 1, 28, 28)
    with pytest.raises(ValueError, match="train_subset"):
        FashionMNISTDataModule(train_subset=59001, val_size=1000).setup("fit")


def _train_tensors(seed, subset=300):
    dm = FashionMNISTDataModule(train_subset=subset, val_size=100, seed=seed)
    dm.setup("fit")
    return dm.train_set.tensors, dm.val_set.tensors


def test_subset_is_deterministic_by_seed():
    (a_x, a_y), (av_x, _) = _train_tensors(0)
    (b_x, b_y), (bv_x, _) = _train_tensors(0)
    (c_x, _), _ = _train_tensors(1)
    assert torch.equal(a_x, b_x) and torch.equal(a_y, b_y) and torch.equal(av_x, bv_x)
    assert not torch.equal(a_x, c_x)
    # the shuffled training order is seeded too
    dm1, dm2 = (FashionMNISTDataModule(batch_size=16, train_subset=64, val_size=0, seed=3) for _ in range(2))
    for dm in (dm1, dm2):
        dm.setup("fit")
    assert torch.equal(next(iter(dm1.train_dataloader()))[1], next(iter(dm2.train_dataloader()))[1])
    assert dm1.val_dataloader() == []


def test_missing_directory_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"dataset-fashion-mnist.*apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("test")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNISTDataModule().prepare_data()


def test_env_var_and_read_idx(tmp_path, monkeypatch):
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labs = np.array([3, 7], dtype=np.uint8)
    for name, arr in zip(datasets.FILES["test"], (imgs, labs)):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(header + arr.tobytes())
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    x, y = load_fashion_mnist("test")
    assert np.array_equal(x, imgs) and y.tolist() == [3, 7]
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val")

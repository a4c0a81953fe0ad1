"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (IDX files, gzip), and a LightningDataModule.

No download: the files come from `apt-get install -y dataset-fashion-mnist` (under
/usr/share/datasets/fashion-mnist/), or from the directory named by MCUPRUNE_FASHION_MNIST_DIR.
"""
from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "MCUPRUNE_FASHION_MNIST_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# mean/std of the 60k training images in [0, 1]
MEAN, STD = 0.2860, 0.3530


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The directory holding the IDX.gz files: `root`, else $MCUPRUNE_FASHION_MNIST_DIR, else the Debian path."""
    return Path(root or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"Fashion-MNIST file not found: {path}. Install the Debian package dataset-fashion-mnist "
        f"(`apt-get install -y dataset-fashion-mnist`, files under {DEFAULT_DIR}) or point {ENV_VAR} "
        f"at a directory holding {', '.join(FILES['train'] + FILES['test'])}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) of unsigned bytes into a numpy array."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} bytes")
    return arr.reshape(shape)


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28] uint8 and labels [N] uint8 of the "train" (60000) or "test" (10000) split.

    The arrays are read-only and cached per (directory, split, file modification times)."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    d = data_dir(root).resolve()
    files = [d / f for f in FILES[split]]
    for f in files:
        if not f.is_file():
            raise _missing(f)
    return _load(str(d), split, tuple(f.stat().st_mtime_ns for f in files))


@functools.lru_cache(maxsize=4)
def _load(d: str, split: str, _mtimes) -> tuple[np.ndarray, np.ndarray]:
    img_file, lbl_file = (Path(d) / f for f in FILES[split])
    images, labels = read_idx(img_file), read_idx(lbl_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{d}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def to_tensors(images: np.ndarray, labels: np.ndarray, mean: float = MEAN, std: float = STD
               ) -> "tuple[torch.Tensor, torch.Tensor]":
    """uint8 images -> float32 [N, 1, 28, 28] normalised to mean 0 / std 1; labels -> int64."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - mean) / std
    return x, torch.from_numpy(labels.astype(np.int64))


class FashionMNISTDataModule(pl.LightningDataModule):
    """Fashion-MNIST: a (deterministic, seeded) training subset, a validation split taken from the 60k
    training images, and the full 10k test set. Images normalised to mean 0, std 1.

    Args:
        batch_size: batch size of every loader.
        train_subset: number of training images used (None: all that are not validation).
        val_size: images held out of the training set for validation (0: no validation loader).
        seed: picks the validation split and the training subset.
        root: directory of the IDX.gz files (default $MCUPRUNE_FASHION_MNIST_DIR or the Debian path).
        num_workers: DataLoader workers.
    """

    def __init__(self, batch_size: int = 128, train_subset: int | None = None, val_size: int = 5000,
                 seed: int = 0, root: str | os.PathLike | None = None, num_workers: int = 0):
        super().__init__()
        self.batch_size, self.train_subset, self.val_size = int(batch_size), train_subset, int(val_size)
        self.seed, self.root, self.num_workers = int(seed), root, int(num_workers)
        self.train_set = self.val_set = self.test_set = None

    def prepare_data(self) -> None:
        d = data_dir(self.root)
        for f in FILES["train"] + FILES["test"]:
            if not (d / f).is_file():
                raise _missing(d / f)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            images, labels = load_fashion_mnist("train", self.root)
            if not 0 <= self.val_size < len(images):
                raise ValueError(f"val_size {self.val_size} out of range for {len(images)} training images")
            perm = np.random.default_rng(self.seed).permutation(len(images))
            val_idx, train_idx = perm[:self.val_size], perm[self.val_size:]
            if self.train_subset is not None:
                if not 0 < self.train_subset <= len(train_idx):
                    raise ValueError(f"train_subset {self.train_subset} out of range (1..{len(train_idx)})")
                train_idx = train_idx[:self.train_subset]
            self.train_set = TensorDataset(*to_tensors(images[train_idx], labels[train_idx]))
            self.val_set = TensorDataset(*to_tensors(images[val_idx], labels[val_idx])) if self.val_size else None
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = TensorDataset(*to_tensors(*load_fashion_mnist("test", self.root)))

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=g, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, shuffle=False)

"""Datasets as (train, test) tensors of pixel intensities u in [0, 1], shape (N, C, H, W).

- ``digits``: scikit-learn's embedded 8x8 digits (pixel / 16), a seeded stratified split.
- ``fashion-mnist``: IDX files (raw or .gz) from ``data_dir``, ``$HWTUNE_DATA`` or
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
- ``mnist``, ``cifar10``: through torchvision (needs the package and a network).

Spike-time encoding happens in the model, once: u spikes at t = 1 - u (float) or at step
T0 - k0 with k0 = ``hwtune.numerics.encode_input(u, T0)`` (integer).
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hwtune.configs import DATASETS
from hwtune.errors import HwtuneError, short

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # unsigned-byte labels (1-D) and images (3-D)


class DatasetError(HwtuneError, ValueError):
    """A dataset that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    train_x: torch.Tensor   # float32 (N, C, H, W) in [0, 1]
    train_y: torch.Tensor   # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    meta: dict = field(default_factory=dict)  # name, source, shape [C, H, W], n_classes, classes, sha256


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) of unsigned bytes, checking magic, dimensions and size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 8:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DatasetError(f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x00000801 or 0x00000803)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = math.prod(dims)          # Python ints: a header claiming 2^66 bytes must not wrap to 0
    found = len(raw) - header
    if found != expected:
        raise DatasetError(f"{path}: the header claims dims {dims} ({expected:,} bytes of data), the file holds "
                           f"{found:,}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).exists():
            return directory / name
    raise DatasetError(f"{directory / stem}(.gz): not found. Install it with `apt-get install "
                       f"dataset-fashion-mnist`, or point --data-dir / HWTUNE_DATA at the IDX files")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_fashion(data_dir: str | None) -> Dataset:
    directory = Path(data_dir or os.environ.get("HWTUNE_DATA") or FASHION_DIR)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: Fashion-MNIST directory not found. Install it with `apt-get install "
                           f"dataset-fashion-mnist`, or point --data-dir / HWTUNE_DATA at the IDX files")
    parts, files = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img, lab = _find(directory, f"{prefix}-images-idx3-ubyte"), _find(directory, f"{prefix}-labels-idx1-ubyte")
        x, y = read_idx(img), read_idx(lab)
        if x.ndim != 3 or y.ndim != 1:
            raise DatasetError(f"{img} / {lab}: expected 3-D images and 1-D labels, got {x.ndim}-D and {y.ndim}-D")
        if x.shape[1:] != (28, 28):
            raise DatasetError(f"{img}: Fashion-MNIST images are 28x28, found {x.shape[1]}x{x.shape[2]}")
        if len(x) == 0:
            raise DatasetError(f"{img}: holds no images")
        if len(x) != len(y):
            raise DatasetError(f"{img} has {len(x)} images but {lab} has {len(y)} labels")
        if y.max() >= len(FASHION_CLASSES):
            bad = int(np.argmax(y >= len(FASHION_CLASSES)))
            raise DatasetError(f"{lab}: label {int(y[bad])} of sample {bad} is not a class "
                               f"(0..{len(FASHION_CLASSES) - 1})")
        parts[split] = (torch.from_numpy(x.astype(np.float32) / 255.0)[:, None], torch.from_numpy(y.astype(np.int64)))
        files[img.name], files[lab.name] = _sha256(img), _sha256(lab)
    meta = {"name": "fashion-mnist", "source": str(directory), "shape": [1, 28, 28], "n_classes": 10,
            "classes": FASHION_CLASSES, "pixel_range": [0, 255], "sha256": files}
    return Dataset(*parts["train"], *parts["test"], meta)


#: Largest seed of the digits train/test split (scikit-learn's random_state is 32-bit).
MAX_SPLIT_SEED = 2 ** 32 - 1


def _load_digits(split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    if not (isinstance(split_seed, int) and not isinstance(split_seed, bool) and 0 <= split_seed <= MAX_SPLIT_SEED):
        raise DatasetError(f"digits split seed = {short(split_seed)} must be an integer in [0, {MAX_SPLIT_SEED}]")
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=split_seed)
    meta = {"name": "digits", "source": "sklearn.datasets.load_digits", "shape": [1, 8, 8], "n_classes": 10,
            "classes": [str(i) for i in range(10)], "pixel_range": [0, 16], "split_seed": split_seed}
    return Dataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te),
                   meta)


def _load_torchvision(name: str, data_dir: str | None) -> Dataset:
    try:
        import torchvision
    except ImportError:
        raise DatasetError(f"torchvision is required for {name}: pip install torchvision") from None
    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    root = data_dir or os.environ.get("HWTUNE_DATA") or str(Path.home() / ".cache" / "hwtune")
    try:
        splits = [cls(root, train=train, download=True) for train in (True, False)]
    except (OSError, RuntimeError) as e:
        raise DatasetError(f"{name}: download to {root} failed ({e}); needs a network connection") from None
    tensors = []
    for ds in splits:
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        tensors += [x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)]
    meta = {"name": name, "source": root, "shape": list(tensors[0].shape[1:]), "n_classes": 10,
            "classes": list(getattr(splits[0], "classes", [])), "pixel_range": [0, 255]}
    return Dataset(*tensors, meta)


def load_dataset(name: str, data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """Train/test tensors and metadata of a dataset by name (see the module docstring)."""
    if name == "digits":
        return _load_digits(split_seed)
    if name == "fashion-mnist":
        return _load_fashion(data_dir)
    if name in ("mnist", "cifar10"):
        return _load_torchvision(name, data_dir)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A random subset of ``n_train`` training samples (seeded) and the first ``n_test`` test
    samples (the same on every command); None keeps a split whole."""
    train = slice(None) if n_train is None or n_train >= len(ds.train_x) else \
        torch.randperm(len(ds.train_x), generator=torch.Generator().manual_seed(seed))[:n_train]
    test = slice(None, n_test)
    return Dataset(ds.train_x[train], ds.train_y[train], ds.test_x[test], ds.test_y[test],
                   {**ds.meta, "subset": {"n_train": n_train, "n_test": n_test, "seed": seed}})


def augment_batch(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (zero fill) and horizontal flip (p = 1/2),
    drawn per sample from ``generator``: "shift-flip", the usual Fashion-MNIST/CIFAR augmentation."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, b), generator=generator))
    rows = (dy[:, None] + torch.arange(h))[:, :, None]                         # (B, H, 1)
    cols = dx[:, None] + torch.arange(w)                                       # (B, W)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]          # (B, 1, W)
    return padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None):
    """Yield (x, y) mini-batches; shuffled with ``generator`` when ``shuffle``."""
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]

"""Datasets as (train, test) tensors of pixel intensities u in [0, 1], shape (N, C, H, W).

- ``digits``: scikit-learn's embedded 8x8 digits (pixel / 16), a seeded stratified split.
- ``fashion-mnist``: IDX files (raw or .gz) from ``data_dir``, ``$HWTUNE_DATA`` or
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
- ``mnist``, ``cifar10``: through torchvision (needs the package and a network).
- a user's own ``PATH.npz``: arrays ``x_train, y_train, x_test, y_test``; images (N, H, W),
  (N, C, H, W), channels-last (N, H, W, C) with C <= 4 < H (transposed, with a note) or flat
  (N, D), uint8 (0..255) or float in [0, 1]; labels integers 0..K-1, every class with training
  samples (:func:`load_npz`). A model trained on it records the file's path and sha256.

Spike-time encoding happens in the model, once: u spikes at t = 1 - u (float) or at step
T0 - k0 with k0 = ``hwtune.numerics.encode_input(u, T0)`` (integer).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hwtune import progress
from hwtune.configs import DATASETS, MAX_CLASSES, MAX_DATASET_ENTRIES, MAX_SPLIT_SEED, check_data_dir
from hwtune.errors import ConfigError, HwtuneError, short
from hwtune.npzfile import open_npz
from hwtune.safepaths import open_regular

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # unsigned-byte labels (1-D) and images (3-D)
#: Most bytes the arrays of an .npz dataset may declare together (its zip members, uncompressed).
MAX_NPZ_BYTES = 2 ** 31


class DatasetError(HwtuneError, ValueError):
    """A dataset that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """A train/test split: pixel tensors u in [0, 1] of shape (N, C, H, W) and int64 labels (N,).

    ``meta`` (name, source, shape [C, H, W], n_classes, classes, sha256, ...) may be left out: shape
    and n_classes are then read off the tensors, and name is "custom". Tensors of the wrong rank,
    dtype or length, or a meta that contradicts them, are refused (DatasetError naming the field)."""

    train_x: torch.Tensor   # float (N, C, H, W) in [0, 1]
    train_y: torch.Tensor   # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train_x", "train_y", "test_x", "test_y"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise DatasetError(f"Dataset.{name}: expected a torch.Tensor, got {type(getattr(self, name)).__name__}")
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or not x.is_floating_point():
                raise DatasetError(f"Dataset.{split}_x: expected a float tensor (N, C, H, W), got {x.dtype} of shape "
                                   f"{tuple(x.shape)}")
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise DatasetError(f"Dataset.{split}_y: expected {len(x)} int64 labels (N,), got {y.dtype} of shape "
                                   f"{tuple(y.shape)}")
        if not isinstance(self.meta, dict):
            raise DatasetError(f"Dataset.meta: expected a dict, got {type(self.meta).__name__}")
        shape = list(self.train_x.shape[1:])
        if list(self.test_x.shape[1:]) != shape:
            raise DatasetError(f"Dataset: train samples have shape {shape}, test samples {list(self.test_x.shape[1:])}")
        labels = torch.cat([self.train_y, self.test_y])
        derived = {"name": "custom", "shape": shape,
                   "n_classes": int(labels.max()) + 1 if len(labels) else 0}
        meta = {**derived, **self.meta}
        if list(meta["shape"]) != shape:
            raise DatasetError(f"Dataset.meta['shape'] = {meta['shape']} but the samples have shape {shape}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= meta["n_classes"]):
            raise DatasetError(f"Dataset: labels span {int(labels.min())}..{int(labels.max())}, outside the "
                               f"{meta['n_classes']} classes of meta['n_classes']")
        object.__setattr__(self, "meta", meta)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) of unsigned bytes, checking magic, dimensions and size; the
    data (decompressed: a gzip bomb stops there) is read only up to the size its header claims,
    which must be at most MAX_DATASET_ENTRIES bytes. A FIFO or device is refused, never opened."""
    path = Path(path)
    try:
        fd = open_regular(path, DatasetError, "IDX file")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    with os.fdopen(fd, "rb") as raw_file:
        try:
            with (gzip.GzipFile(fileobj=raw_file) if path.suffix == ".gz" else contextlib.nullcontext(raw_file)) as f:
                return _read_idx(path, f)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None


def _read_idx(path: Path, f) -> np.ndarray:
    head = f.read(8)
    if len(head) < 8:
        raise DatasetError(f"{path}: {len(head)} bytes, too short for an IDX header")
    magic = int.from_bytes(head[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DatasetError(f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x00000801 or 0x00000803)")
    ndim = _IDX_MAGIC[magic]
    dims_raw = head[4:] + f.read(4 * ndim - 4)
    if len(dims_raw) < 4 * ndim:
        raise DatasetError(f"{path}: truncated header ({4 + len(dims_raw)} bytes, need {4 + 4 * ndim})")
    dims = [int.from_bytes(dims_raw[4 * i: 4 + 4 * i], "big") for i in range(ndim)]
    expected = math.prod(dims)          # Python ints: a header claiming 2^66 bytes must not wrap to 0
    if expected > MAX_DATASET_ENTRIES:
        raise DatasetError(f"{path}: the header claims dims {dims} ({expected:,} bytes of data), more than hwtune's "
                           f"limit of {MAX_DATASET_ENTRIES:,}")
    data = f.read(expected)
    extra = len(f.read(1))
    if len(data) != expected or extra:
        found = f"{len(data):,}" if not extra else f"more than {expected:,}"
        raise DatasetError(f"{path}: the header claims dims {dims} ({expected:,} bytes of data), the file holds "
                           f"{found}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).exists():
            return directory / name
    raise DatasetError(f"{directory / stem}(.gz): not found. Install it with `apt-get install "
                       f"dataset-fashion-mnist`, or point --data-dir / HWTUNE_DATA at the IDX files")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, DatasetError, "dataset file"), "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(ds: Dataset) -> str:
    """sha256 of a dataset's content: of its files' sha256 where its meta records them (Fashion-MNIST,
    an .npz), else of its tensors and its digits split."""
    digest = hashlib.sha256(json.dumps({"name": ds.meta.get("name"), "split_seed": ds.meta.get("split_seed"),
                                        "sha256": ds.meta.get("sha256")}, sort_keys=True).encode())
    if "sha256" not in ds.meta:
        for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
            digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


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


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_npz(name: str | None) -> bool:
    """Whether a dataset name is a user's .npz file (else a built-in dataset)."""
    return isinstance(name, str) and name.endswith(".npz")


#: Most channels of a channels-last image array (N, H, W, C): grey, grey + alpha, RGB, RGBA.
CHANNELS_LAST_MAX = 4


def _npz_images(path: Path, key: str, x: np.ndarray) -> torch.Tensor:
    if x.ndim == 2:
        x = x[:, None, None, :]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] <= CHANNELS_LAST_MAX < x.shape[1]:
        progress.log(f"note: {path}: {key} of shape {x.shape} read as channels-last (N, H, W, C): "
                     f"{x.shape[3]} channel(s) of {x.shape[1]} x {x.shape[2]} pixels")
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or 0 in x.shape:
        raise DatasetError(f"{path}: {key} must hold (N, H, W), (N, C, H, W) or (N, D) images, N >= 1 and every size "
                           ">= 1; "
                           f"got shape {x.shape}")
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{path}: {key} must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DatasetError(f"{path}: {key}: float pixels must be finite and in [0, 1] (found {x.min()}..{x.max()})")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def load_npz(path: str | Path) -> Dataset:
    """A user's dataset from an .npz file holding ``x_train, y_train, x_test, y_test`` (module
    docstring), read by hwtune.npzfile: at most MAX_NPZ_BYTES declared, MAX_DATASET_ENTRIES values
    and MAX_CLASSES classes."""
    path = Path(path)
    with open_npz(path, DatasetError, MAX_NPZ_BYTES, MAX_DATASET_ENTRIES) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise DatasetError(f"{path}: missing array(s) {', '.join(missing)}; an .npz dataset holds "
                               f"{', '.join(NPZ_KEYS)} (found: {', '.join(f.files) or 'none'})")
        arrays = {k: f.read(k) for k in NPZ_KEYS}
    parts = []
    for split in ("train", "test"):
        x = _npz_images(path, f"x_{split}", arrays[f"x_{split}"])
        y = arrays[f"y_{split}"]
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{path}: y_{split} must be {len(x)} integer labels (one per image of x_{split}), "
                               f"got {y.dtype} of shape {y.shape}")
        if y.min() < 0:
            raise DatasetError(f"{path}: y_{split}: label {int(y.min())} is negative (labels are 0..K-1)")
        if y.max() >= MAX_CLASSES:
            raise DatasetError(f"{path}: y_{split}: label {int(y.max())} of sample {int(np.argmax(y))} makes more "
                               f"than hwtune's limit of {MAX_CLASSES:,} classes (labels are 0..K-1)")
        parts += [x, torch.from_numpy(y.astype(np.int64))]
    if parts[0].shape[1:] != parts[2].shape[1:]:
        raise DatasetError(f"{path}: x_train samples have shape {tuple(parts[0].shape[1:])}, x_test samples "
                           f"{tuple(parts[2].shape[1:])}")
    n_classes = int(max(parts[1].max(), parts[3].max())) + 1
    empty = sorted(set(range(n_classes)) - set(parts[1].unique().tolist()))
    if empty:
        hint = (f"; labels run 1..{n_classes - 1}, hwtune numbers classes from 0: store y - 1" if empty == [0] and
                int(parts[3].min()) > 0 else "; classes are numbered 0..K-1, every one with training samples")
        listed = ", ".join(str(c) for c in empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise DatasetError(f"{path}: y_train: class(es) {listed} of 0..{n_classes - 1} have no training sample{hint}")
    meta = {"name": "npz", "source": str(path.resolve()), "shape": list(parts[0].shape[1:]), "n_classes": n_classes,
            "classes": [str(i) for i in range(n_classes)], "sha256": {path.name: _sha256(path)}}
    return Dataset(*parts, meta)


def load_dataset(name: str, data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """Train/test tensors and metadata of a dataset by name, or of a user's ``.npz`` file (see the
    module docstring). An empty ``data_dir``, or one given for data that reads no directory (digits,
    an .npz), is refused (hwtune.configs.check_data_dir)."""
    try:
        check_data_dir(name, data_dir)
    except ConfigError as e:
        raise DatasetError(str(e)) from None
    if is_npz(name):
        return load_npz(name)
    if name == "digits":
        return _load_digits(split_seed)
    if name == "fashion-mnist":
        return _load_fashion(data_dir)
    if name in ("mnist", "cifar10"):
        return _load_torchvision(name, data_dir)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or a path to an .npz file")


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

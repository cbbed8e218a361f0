"""Checks of the Python API's arguments (hwtune.api), before any work, with the CLI's rules (hwtune.configs).

Each check returns the argument in the form the API works with, or raises ``TypeError`` (wrong
kind of object) / ``ValueError`` (ConfigError and the loaders' errors; right kind, bad value)
naming the argument, the value and what is expected. Accepted alternatives: a model directory path
where a net is expected, an artifact directory path where an artifact is expected, a dataset name
where a Dataset is expected.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from hwtune.settings import check_value, rule_of
from hwtune.configs import SEED_RULE, DataConfig
from hwtune.errors import ConfigError, HwtuneError, short


class ArgumentTypeError(HwtuneError, TypeError):
    """An API argument of the wrong kind."""


def _wrong(arg: str, value, expected: str):
    raise ArgumentTypeError(f"{arg} = {short(value, 60)} ({type(value).__name__}): expected {expected}")


def path(value, arg: str = "path") -> str | os.PathLike:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        _wrong(arg, value, "a directory path (str or os.PathLike)")
    return value


def flag(value, arg: str) -> bool:
    """A True/False argument (a string such as "False" is refused, not taken as true)."""
    if not isinstance(value, bool):
        _wrong(arg, value, "True or False")
    return value


def model(value, arg: str = "net", paths: bool = True):
    """A TTFSNet, or (``paths``) a model directory path, loaded and validated. ``save``, which
    writes the net, takes a TTFSNet only (``paths=False``)."""
    from hwtune.ttfs import TTFSNet
    if isinstance(value, TTFSNet):
        return value
    if paths and isinstance(value, (str, os.PathLike)):
        from hwtune import io
        return io.load(path(value, arg))
    _wrong(arg, value, "a TTFSNet (hwtune.train, hwtune.load)" + (" or a model directory path" if paths else
                                                                    "; load a model directory with hwtune.load first"))


def artifact(value, arg: str = "artifact"):
    """An Artifact, or an artifact directory path (loaded and validated)."""
    from hwtune.artifact import Artifact
    if isinstance(value, Artifact):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Artifact.load(path(value, arg))
    _wrong(arg, value, "an Artifact (hwtune.export(net) makes one) or an artifact directory path")


def dataset(value, arg: str = "data"):
    """A Dataset, or a dataset name (loaded with the default split)."""
    from hwtune.configs import check_dataset_name
    from hwtune.data import Dataset, load_dataset
    if isinstance(value, Dataset):
        return value
    if isinstance(value, str):
        check_dataset_name(check_value(rule_of(DataConfig, "dataset"), arg, value), arg)   # a name or PATH.npz
        return load_dataset(value)
    _wrong(arg, value, "a Dataset (hwtune.load_dataset), a dataset name or a PATH.npz")


def relu_module(value, arg: str = "relu"):
    from hwtune.ttfs import TTFSNet
    if not isinstance(value, torch.nn.Module) or isinstance(value, TTFSNet):
        _wrong(arg, value, "a trained ReLU torch module (nn.Module; a TTFSNet is converted already)")
    return value


def seed(value, arg: str = "seed") -> int:
    return check_value(SEED_RULE, arg, value)


def samples(value, arg: str = "samples") -> int | None:
    """None (all) or a count >= 1 (DataConfig's rule)."""
    return check_value(rule_of(DataConfig, "samples"), arg, value)


def train_samples(value, arg: str = "train_samples") -> int | None:
    return check_value(rule_of(DataConfig, "train_samples"), arg, value)


def device(settings: dict) -> None:
    """A ``device`` setting naming CUDA is refused where torch sees none (before training starts)."""
    if settings.get("device") == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA device (use 'cpu' or 'auto')")


def pixels(value, arg: str = "x", shape: tuple | None = None) -> torch.Tensor:
    """Pixel intensities: a non-empty tensor or array of finite numbers in [0, 1] whose samples have
    ``shape`` (or its number of values). A sparse tensor, or one without data (device 'meta'), is
    refused by kind."""
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_meta:
            _wrong(arg, value, "a dense tensor holding pixel intensities in [0, 1] (not sparse, not on device 'meta')")
        x = value.detach().cpu()
    elif isinstance(value, (np.ndarray, list, tuple)):
        try:
            x = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            _wrong(arg, value, "a tensor or array of pixel intensities in [0, 1]")
    else:
        _wrong(arg, value, "a tensor or array of pixel intensities in [0, 1]")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
        _wrong(arg, value, "a tensor or array of numbers")
    if x.ndim < 2 or len(x) == 0:
        raise ConfigError(f"{arg}: shape {tuple(x.shape)}: expected a non-empty batch (samples, ...)")
    if shape is not None and x[0].numel() != int(np.prod(shape)):
        raise ConfigError(f"{arg}: samples of shape {tuple(x.shape[1:])}; the net takes {tuple(shape)}")
    x = x.double() if not x.is_floating_point() else x
    bad = ~torch.isfinite(x) | (x < 0) | (x > 1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad.reshape(len(x), -1))[0, 0])
        raise ConfigError(f"{arg}: sample {i} holds {float(x[i][bad[i]].reshape(-1)[0])}; pixel intensities "
                          "must be finite and in [0, 1]")
    return x

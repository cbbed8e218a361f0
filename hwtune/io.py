"""The model directory: ``model.safetensors`` (tensors) + ``hwtune.json`` (everything else).

One format for every stage (trained, converted, after each pass). ``hwtune.json`` holds the
architecture, windows (tau_c), the quantization state (time grid, weight format), the target,
the dataset and the history of passes with provenance. For quantized nets the integer weight
mantissas are stored too (``int.{n}.weight``), so their bit width can be read off the file.
Directories are written atomically; loading validates and names what is wrong.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hwtune.atomic import atomic_directory
from hwtune.ttfs.arch import ArchError
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.quant import QuantSpec, weight_mantissa

FORMAT = "hwtune-model"
VERSION = 1
TENSORS = "model.safetensors"
CONFIG = "hwtune.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Keys of ``hwtune.json`` carried in ``net.info`` (network kind, dataset, training report, target, passes, provenance).
INFO_KEYS = ("network", "dataset", "training", "target", "history", "provenance")


class ModelFileError(ValueError):
    """A model directory that cannot be read; the message names the file and the problem."""


def integer_weights(net: TTFSNet) -> dict[str, torch.Tensor]:
    """Integer weight mantissas of a net with quantized weights, as int8/int16 tensors."""
    if net.quant is None or net.quant.weights is None:
        return {}
    dtype = torch.int8 if net.quant.weights.bits <= 8 else torch.int16
    with torch.no_grad():
        return {f"int.{n}.weight": weight_mantissa(syn)[0].round().to(dtype) for n, syn in enumerate(net.synapses)}


def save(net: TTFSNet, path: str | Path) -> Path:
    """Write ``net`` to the directory ``path`` (replaced atomically)."""
    tensors = {}
    for n, syn in enumerate(net.synapses):
        tensors[f"synapses.{n}.weight"] = syn.weight.detach().contiguous()
        tensors[f"synapses.{n}.bias"] = syn.bias.detach().contiguous()
    tensors["windows"] = net.windows.detach().contiguous()
    tensors.update(integer_weights(net))
    config = {
        "format": FORMAT, "version": VERSION,
        "arch": net.arch, "input_shape": list(net.input_shape),
        "dtype": str(net.dtype).removeprefix("torch."),
        "windows": net.windows.tolist(), "saturate": net.saturate,
        "quant": None if net.quant is None else net.quant.to_dict(),
        **net.info,
    }
    path = Path(path)
    with atomic_directory(path) as tmp:
        save_file(tensors, str(tmp / TENSORS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return path


def _read_config(path: Path) -> dict:
    file = path / CONFIG
    if not path.is_dir():
        raise ModelFileError(f"{path}: not a model directory (expected {CONFIG} and {TENSORS} inside)")
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{file}: missing") from None
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{file}: not valid JSON ({e})") from None
    if config.get("format") != FORMAT:
        raise ModelFileError(f"{file}: format is {config.get('format')!r}, expected {FORMAT!r}")
    for key in ("arch", "input_shape", "dtype", "windows"):
        if key not in config:
            raise ModelFileError(f"{file}: missing key {key!r}")
    if config["dtype"] not in DTYPES:
        raise ModelFileError(f"{file}: dtype {config['dtype']!r} not one of {list(DTYPES)}")
    return config


def load(path: str | Path) -> TTFSNet:
    """Read a model directory written by :func:`save`, checking every tensor against the config."""
    path = Path(path)
    config = _read_config(path)
    file = path / TENSORS
    try:
        tensors = load_file(str(file))
    except FileNotFoundError:
        raise ModelFileError(f"{file}: missing") from None
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"{file}: unreadable ({e})") from None
    try:
        net = TTFSNet(config["arch"], tuple(config["input_shape"]), windows=config["windows"],
                      dtype=DTYPES[config["dtype"]])
    except (ArchError, KeyError, TypeError, RuntimeError) as e:
        raise ModelFileError(f"{path / CONFIG}: invalid architecture or windows ({e})") from None
    for n, syn in enumerate(net.synapses):
        for name in ("weight", "bias"):
            key = f"synapses.{n}.{name}"
            if key not in tensors:
                raise ModelFileError(f"{file}: missing tensor {key!r}")
            want = tuple(getattr(syn, name).shape)
            if tuple(tensors[key].shape) != want:
                raise ModelFileError(f"{file}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                                     f"architecture says {want} (layer {n})")
            with torch.no_grad():
                getattr(syn, name).copy_(tensors[key])
    net.saturate = bool(config.get("saturate", False))
    if config.get("quant") is not None:
        try:
            net.set_quant(QuantSpec.from_dict(config["quant"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{path / CONFIG}: invalid 'quant' section ({e})") from None
        for key, stored in integer_weights(net).items():
            if key not in tensors or not torch.equal(tensors[key], stored):
                raise ModelFileError(f"{file}: integer weights {key!r} missing or inconsistent with the float "
                                     "weights (file edited or corrupt)")
    net.info = {k: v for k, v in config.items() if k in INFO_KEYS}
    return net

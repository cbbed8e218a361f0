"""The model directory: ``model.safetensors`` (tensors) + ``hwtune.json`` (everything else).

One format for every stage (trained, converted, after each pass). ``hwtune.json`` holds the
architecture, windows (tau_c), the quantization state (time grid, weight format), the target the
model is prepared for (its whole spec, hwtune.target), the dataset and the history of passes with
provenance. For quantized nets the integer weight mantissas are stored too (``int.{n}.weight``):
they are what the net computes with, readable (and their bit width checkable) without torch or
brevitas. Loading reads them first, checks them on their own (integer dtype, inside the weight
format's range), then checks that brevitas quantizes the stored float weights to exactly these
integers; a difference names the layer, the weight and both values. Directories are written
atomically; loading validates every field and tensor (finite values included) and names what is wrong.

Format versions: 4 may give the architecture's nodes names and inputs (a graph: hwtune.graph); 3
names layer kinds as hwtune.layers does (conv2d, sumpool); 2 named them conv, avgpool (read as
their kinds) and records the target as a full spec; 1 (hwtune 0.1) recorded its name only, which is
read as the shipped target of that name.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hwtune import graph
from hwtune.atomic import Destination, atomic_directory
from hwtune.configs import MAX_JSON_BYTES, MAX_LAYER_ENTRIES, MAX_MODEL_ENTRIES
from hwtune.errors import HwtuneError, OutputError, short
from hwtune.layers import ArchError
from hwtune.numerics import (BIAS_BITS, DEFAULT_BIAS_BITS, DEFAULT_SCALE_EXPONENTS, MAX_STEPS, SCALE_EXPONENTS,
                             SYNAPTIC_DELAY, WEIGHT_BITS)
from hwtune.safepaths import open_regular, read_file, regular_file
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.quant import QuantSpec, weight_mantissa

FORMAT = "hwtune-model"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
TENSORS = "model.safetensors"
CONFIG = "hwtune.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Keys of ``hwtune.json`` carried in ``net.info`` and the JSON type each must have.
INFO_KEYS = {"network": str, "dataset": dict, "training": dict, "target": (dict, str), "history": list,
             "provenance": dict}


class ModelFileError(HwtuneError, ValueError):
    """A model directory that cannot be read; the message names the file and the problem."""


def integer_weights(net: TTFSNet) -> dict[str, torch.Tensor]:
    """Integer weight mantissas of a net with quantized weights, as int8/int16 tensors."""
    if net.quant is None or net.quant.weights is None:
        return {}
    dtype = torch.int8 if net.quant.weights.bits <= 8 else torch.int16
    with torch.no_grad():
        return {f"int.{n}.weight": weight_mantissa(syn)[0].round().to(dtype) for n, syn in enumerate(net.synapses)}


def save(net: TTFSNet, path: str | Path | Destination) -> Path:
    """Write ``net`` to the directory ``path`` atomically: ``path`` is what hwtune.atomic.check_output
    returned (committed only onto what it found there), or a path (a new one, or an earlier hwtune
    output). Refuses non-finite parameters."""
    tensors = {}
    for n, syn in enumerate(net.synapses):
        tensors[f"synapses.{n}.weight"] = syn.weight.detach().contiguous()
        tensors[f"synapses.{n}.bias"] = syn.bias.detach().contiguous()
    tensors["windows"] = net.windows.detach().contiguous()
    for key, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ModelFileError(f"{getattr(path, 'path', path)}: refusing to save a model whose {key!r} holds NaN "
                                 "or infinite values")
    tensors.update(integer_weights(net))
    config = {
        "format": FORMAT, "version": VERSION,
        "arch": net.arch, "input_shape": list(net.input_shape),
        "dtype": str(net.dtype).removeprefix("torch."),
        "windows": net.windows.tolist(), "saturate": net.saturate,
        "quant": None if net.quant is None else net.quant.to_dict(),
        **net.info,
    }
    where = path.path if isinstance(path, Destination) else Path(path)
    with atomic_directory(path) as tmp:
        try:
            save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp / TENSORS))
        except SafetensorError as e:   # not an OSError: a full disk, a quota, an I/O error
            raise OutputError(f"{where}: cannot write {TENSORS} ({e}); nothing was written") from None
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
    return where


#: The keys of ``hwtune.json`` a model computes with (:func:`fingerprint`): not its history or provenance.
_COMPUTES_WITH = ("arch", "input_shape", "dtype", "windows", "saturate", "quant", "target", "dataset")


def fingerprint(path: str | Path) -> str:
    """sha256 of what a model directory computes with: its tensor file and the keys of its
    ``hwtune.json`` that the forward pass, the target and the data depend on (not its history,
    provenance or timestamps: a model retrained to the same weights has the same fingerprint)."""
    path = Path(path)
    config = _read_config(path)
    digest = hashlib.sha256(json.dumps({k: config.get(k) for k in _COMPUTES_WITH}, sort_keys=True).encode())
    fd = open_regular(path / TENSORS, ModelFileError, "tensor file")
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(file: Path, message: str):
    raise ModelFileError(f"{file}: {message}")


def _read_config(path: Path) -> dict:
    file = path / CONFIG
    if not path.is_dir():
        _fail(path, f"not a model directory (expected {CONFIG} and {TENSORS} inside)")
    text = read_file(file, ModelFileError, "model file", MAX_JSON_BYTES)
    try:
        config = json.loads(text)
    except UnicodeDecodeError as e:
        _fail(file, f"unreadable ({e})")
    except (json.JSONDecodeError, RecursionError) as e:
        _fail(file, f"not valid JSON ({str(e)[:200]})")
    if not isinstance(config, dict):
        _fail(file, f"expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        _fail(file, f"format is {short(config.get('format'))}, expected {FORMAT!r}")
    if config.get("version") not in READABLE_VERSIONS or isinstance(config.get("version"), bool):
        _fail(file, f"format version {short(config.get('version'))} is not one this hwtune reads "
                    f"({READABLE_VERSIONS}); upgrade hwtune")
    for key in ("arch", "input_shape", "dtype", "windows"):
        if key not in config:
            _fail(file, f"missing key {key!r}")
    for key, typ in INFO_KEYS.items():
        if key in config and not isinstance(config[key], typ):
            _fail(file, f"{key!r} must be a JSON {'object' if typ is dict else typ}, got {short(config[key])}")
    if not all(isinstance(h, dict) for h in config.get("history", [])):
        _fail(file, "'history' must be a list of JSON objects (one per pass)")
    if not isinstance(config["dtype"], str) or config["dtype"] not in DTYPES:
        _fail(file, f"dtype {short(config['dtype'])} not one of {list(DTYPES)}")
    shape = config["input_shape"]
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                      for n in shape)):
        _fail(file, f"input_shape must be a list of positive integers, got {short(shape)}")
    try:
        net_graph = graph.read(config["arch"], tuple(shape))
    except ArchError as e:
        _fail(file, f"invalid architecture: {e}")
    _check_sizes(file, net_graph, tuple(shape))
    n_hidden = net_graph.n_hidden
    windows = config["windows"]
    if not (isinstance(windows, list) and len(windows) == n_hidden
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
                    for w in windows)):
        _fail(file, f"windows must list {n_hidden} positive finite lengths (tau_c), got {short(windows)}")
    if not isinstance(config.get("saturate", False), bool):
        _fail(file, f"saturate must be true or false, got {short(config['saturate'])}")
    if config.get("quant") is not None:
        _check_quant(file, config["quant"], n_hidden)
    return config


def _check_sizes(file: Path, net_graph, input_shape: tuple) -> None:
    """Refuse nodes with more than MAX_LAYER_ENTRIES values or weights, and nets with more than
    MAX_MODEL_ENTRIES of them all together, before any is allocated."""
    counts = [("neurons", "the input", math.prod(input_shape))] + \
        [("neurons", f"layer {node.index} ({node.spec['kind']})", math.prod(node.shape)) for node in net_graph.nodes] + \
        [("weights", f"layer {i} ({net_graph.nodes[i].spec['kind']})",
          net_graph.nodes[i].cls.spec_weights(net_graph.nodes[i].spec)) for i in net_graph.synapses]
    for what, where, n in counts:
        if n > MAX_LAYER_ENTRIES:
            _fail(file, f"{where} has {n:,} {what}, more than hwtune's limit of {MAX_LAYER_ENTRIES:,}")
    total = sum(n for _, _, n in counts)
    if total > MAX_MODEL_ENTRIES:
        _fail(file, f"the net's {len(net_graph.nodes)} layers have {total:,} neurons and weights together, more than "
                    f"hwtune's limit of {MAX_MODEL_ENTRIES:,}")


def _check_quant(file: Path, quant, n_hidden: int) -> None:
    """The 'quant' section: a time grid of n_hidden + 1 windows, a weight format or null, a delay."""
    def int_in(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    if not isinstance(quant, dict):
        _fail(file, f"'quant' must be a JSON object or null, got {short(quant)}")
    steps = quant.get("steps")
    if not (isinstance(steps, list) and len(steps) == n_hidden + 1 and all(int_in(s, 1, MAX_STEPS) for s in steps)):
        _fail(file, f"quant.steps must list {n_hidden + 1} window lengths in 1..{MAX_STEPS} (input + hidden), got "
                    f"{short(steps)}")
    if not int_in(quant.get("delay", 1), *SYNAPTIC_DELAY):
        _fail(file, f"quant.delay must be an integer in {SYNAPTIC_DELAY[0]}..{SYNAPTIC_DELAY[1]}, got "
                    f"{short(quant.get('delay'))}")
    w = quant.get("weights")
    if w is None:
        return
    keys = {"bits", "narrow", "scale", "exp_range", "bias_bits"}
    exp = w.get("exp_range", list(DEFAULT_SCALE_EXPONENTS)) if isinstance(w, dict) else None
    if not (isinstance(w, dict) and set(w) <= keys and int_in(w.get("bits"), *WEIGHT_BITS)
            and isinstance(exp, list) and len(exp) == 2 and all(int_in(e, *SCALE_EXPONENTS) for e in exp)
            and exp[0] <= exp[1]
            and isinstance(w.get("narrow", False), bool) and w.get("scale", "per-layer") in ("per-layer", "per-channel")
            and int_in(w.get("bias_bits", DEFAULT_BIAS_BITS), *BIAS_BITS)):
        _fail(file, f"quant.weights is not a valid weight format: {short(w)}")


def _read_tensors(file: Path, net: TTFSNet) -> dict[str, torch.Tensor]:
    """The tensors of ``net`` in a safetensors file, each shape checked in the file's header before
    it is read (other tensors in the file are never loaded)."""
    wanted = {f"{prefix}.{n}.{name}": tuple(getattr(syn, name).shape) for n, syn in enumerate(net.synapses)
              for prefix, name in (("synapses", "weight"), ("synapses", "bias"), ("int", "weight"))}
    tensors = {}
    try:
        with safe_open(str(file), framework="pt") as f:
            present = set(f.keys())
            for key, want in wanted.items():
                if key not in present:
                    continue
                shape = tuple(f.get_slice(key).get_shape())
                if shape != want:
                    layer = key.split(".")[1]
                    _fail(file, f"tensor {key!r} has shape {shape}, architecture says {want} (layer {layer})")
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError) as e:
        _fail(file, f"unreadable ({e})")
    return tensors


def load(path: str | Path) -> TTFSNet:
    """Read a model directory written by :func:`save`, checking every field and tensor."""
    path = Path(path)
    config = _read_config(path)
    net = TTFSNet(config["arch"], tuple(config["input_shape"]), windows=config["windows"],
                  dtype=DTYPES[config["dtype"]])
    file = regular_file(path / TENSORS, ModelFileError, "tensor file")
    tensors = _read_tensors(file, net)
    for n, syn in enumerate(net.synapses):
        for name in ("weight", "bias"):
            key = f"synapses.{n}.{name}"
            if key not in tensors:
                _fail(file, f"missing tensor {key!r}")
            if not tensors[key].is_floating_point() or not torch.isfinite(tensors[key]).all():
                _fail(file, f"tensor {key!r} (layer {n}) holds NaN, infinite or non-float values")
            with torch.no_grad():
                getattr(syn, name).copy_(tensors[key])
    net.saturate = bool(config.get("saturate", False))
    if config.get("quant") is not None:
        spec = QuantSpec.from_dict(config["quant"])
        stored = _stored_integers(file, tensors, net, spec)
        net.set_quant(spec)
        _check_against_brevitas(file, stored, net)
    net.info = {k: v for k, v in config.items() if k in INFO_KEYS}
    return net


def _stored_integers(file: Path, tensors: dict, net: TTFSNet, spec: QuantSpec) -> dict[str, torch.Tensor]:
    """The integer weight mantissas the file stores, checked on their own: present, of an integer
    dtype, inside the weight format's signed range (shapes were checked by :func:`_read_tensors`)."""
    if spec.weights is None:
        return {}
    lo, hi = spec.weights.qmin, spec.weights.qmax
    stored = {}
    for n in range(len(net.synapses)):
        key = f"int.{n}.weight"
        where = f"tensor {key!r} (layer {n}, {net.synapse_spec(n)['kind']})"
        if key not in tensors:
            _fail(file, f"missing {where}: a model with integer weights stores its mantissas")
        q = tensors[key]
        if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
            _fail(file, f"{where} has dtype {q.dtype}, expected integers")
        q = q.to(torch.int64)          # compare in int64: the bounds may not fit the file's dtype
        bad = ((q < lo) | (q > hi)).nonzero()
        if len(bad):
            index = tuple(bad[0].tolist())
            _fail(file, f"{where}: weight {list(index)} is {int(q[index])}, outside the {spec.weights.bits}-bit range "
                        f"[{lo}, {hi}] ({len(bad)} of {q.numel()} are)")
        stored[key] = q
    return stored


def _check_against_brevitas(file: Path, stored: dict[str, torch.Tensor], net: TTFSNet) -> None:
    """Refuse a file whose stored integers differ from what brevitas makes of its float weights
    (an edited file, or a brevitas that rounds differently from the one that wrote it)."""
    import brevitas
    for n, (key, q) in enumerate(integer_weights(net).items()):
        differ = (stored[key] != q.to(torch.int64)).nonzero()
        if len(differ):
            index = tuple(differ[0].tolist())
            _fail(file, f"layer {n} ({net.synapse_spec(n)['kind']}): stored integer weight {list(index)} is "
                        f"{int(stored[key][index])} but brevitas {brevitas.__version__} quantizes the stored float "
                        f"weight to {int(q[index])} ({len(differ)} of {q.numel()} differ): the file was edited, or "
                        "written with a brevitas that rounds differently")

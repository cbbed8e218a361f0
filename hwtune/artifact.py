"""The deployable integer model: a graph of integer layers + a time schedule, numpy only (no torch).

An :class:`Artifact` is pure data (see docs/design.md, "Integer model" and "Graphs"): a graph whose
nodes are integer layers (:class:`ArtifactLayer`) and whose edges are each layer's ``inputs``, the
names of the layers (or ``"input"``, the encoded sample) whose activations it receives. A layer
passes them through a stage (hwtune.layers.stage: shape ops such as flatten, sum pooling or a
concat, then one synapse: dense, conv2d, or a join of stages such as a residual add, integer
mantissas q), then fires. Layers are listed in topological order (a layer's inputs come before it)
and every layer but the read-out feeds another; every backend walks them in that order. For hidden
layer n with own window T_n and integration window T (numerics.Timing: the longest of its inputs'
windows), per neuron i of output channel c:

    V_i = stage(k_inputs)_i + beta_c * T              (potential units)
    k_i = clip(floor(V_i / sigma_c), 0, T_n)          (steps; numerics.fire)

and the read-out (last layer, no spikes) gives the logits V_i (float: logit_scale * V_i). Bias
and slope are one per output channel (per neuron for dense layers). Execution lives in
:mod:`hwtune.backends`; this module only represents, validates, saves and loads, and runs the
export-time hardware checks (:func:`check`).

On disk an artifact is a directory holding ``artifact.json`` (scalars, schedule, the layer graph:
layers with their ``inputs`` and stage, metadata, the target and its resource map) and
``arrays.npz`` (``layer{i}.weight`` (then ``.weight.1``, ... for a layer with several synapses),
``layer{i}.bias``, ``layer{i}.slope``). Format version 4 (a stage may take several inputs:
``in_shapes``, and a join's synapse holds branches); versions 3 and 2 (layers without ``inputs``)
and 1 (hwtune 0.1: dense layers only, read as flatten + dense) load as they were written.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwtune import numerics
from hwtune.numerics import ARTIFACT_REGISTER_BITS, ARTIFACT_WEIGHT_BITS, MAX_STEPS, SYNAPTIC_DELAY
from hwtune.atomic import Destination, atomic_directory
from hwtune.configs import MAX_JSON_BYTES, MAX_LAYER_ENTRIES, MAX_MODEL_ENTRIES
from hwtune.errors import HwtuneError, short
from hwtune.layers import Dense, OpError, Stage, Synapse, exact_dtype
from hwtune.device_noise import Geometry
from hwtune.npzfile import open_npz
from hwtune.safepaths import UnsafeNameError, check_name, read_file

FORMAT = "hwtune-artifact"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
#: The name by which a layer's ``inputs`` refer to the encoded sample (no layer may bear it).
INPUT = "input"
JSON_FILE = "artifact.json"
ARRAYS_FILE = "arrays.npz"
OVERFLOW_MODES = ("error", "saturate", "wrap")
#: How many violations :func:`check` spells out before summarising the rest.
MAX_LISTED_VIOLATIONS = 5


class ArtifactError(HwtuneError, ValueError):
    """An artifact is malformed, unreadable, or does not fit the target hardware."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ArtifactError(message)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_array(x, where: str, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` as an int64 array, after checking it has an integer dtype (and ``shape``)."""
    a = np.asarray(x)
    _require(np.issubdtype(a.dtype, np.integer), f"{where}: {what} has dtype {a.dtype}, expected integers")
    if shape is not None:
        _require(a.shape == shape, f"{where}: {what} has shape {a.shape}, expected {shape}")
    return a.astype(np.int64)


def _shape(value, where: str, what: str) -> tuple:
    _require(isinstance(value, (tuple, list)) and len(value) > 0 and all(_is_int(n) and n >= 1 for n in value),
             f"{where}: {what} must be a non-empty list of positive integers, got {short(value)}")
    return tuple(int(n) for n in value)


def _check_layer_fields(where: str, name, window_steps, readout, logit_scale) -> None:
    """Scalar fields of one layer (shared by the constructor and the JSON reader)."""
    try:
        check_name(name, "name")
    except UnsafeNameError as e:
        raise ArtifactError(f"{where}: {e}") from None
    _require(name != INPUT, f"{where}: {INPUT!r} names the encoded sample in a layer's inputs; a layer cannot bear it")
    _require(isinstance(readout, (bool, np.bool_)), f"{where}: readout must be a bool, got {short(readout)}")
    if readout:
        _require(window_steps is None, f"{where}: the read-out has no window, got window_steps={short(window_steps)}")
    else:
        _require(_is_int(window_steps) and 1 <= window_steps <= MAX_STEPS,
                 f"{where}: window_steps must be an integer in [1, {MAX_STEPS}], got {short(window_steps)}")
    _require(isinstance(logit_scale, (int, float, np.floating)) and not isinstance(logit_scale, bool)
             and math.isfinite(logit_scale), f"{where}: logit_scale must be a finite number, got {short(logit_scale)}")


def _check_artifact_fields(where: str, input_shape, input_steps, synaptic_delay, weight_bits,
                           membrane_bits, overflow, meta) -> None:
    """Scalar fields of an artifact (shared by the constructor and the JSON reader)."""
    _shape(input_shape, where, "input_shape")
    for key, value, (lo, hi) in (("input_steps", input_steps, (1, MAX_STEPS)), ("synaptic_delay", synaptic_delay, SYNAPTIC_DELAY),
                                 ("weight_bits", weight_bits, ARTIFACT_WEIGHT_BITS),
                                 ("membrane_bits", membrane_bits, ARTIFACT_REGISTER_BITS)):
        _require(_is_int(value) and lo <= value <= hi,
                 f"{where}: {key} must be an integer in [{lo}, {hi}], got {short(value)}")
    _require(overflow in OVERFLOW_MODES, f"{where}: overflow must be one of {OVERFLOW_MODES}, got {short(overflow)}")
    _require(isinstance(meta, dict), f"{where}: meta must be a dict, got {type(meta).__name__}")


@dataclass
class ArtifactLayer:
    """One spiking (or read-out) layer: a stage (shape ops, a synapse with integer weights; hwtune.layers.stage)
    on the activations of its inputs, then neurons with biases and slopes.

    synapse: Dense (weight (out, in)), Conv2d (weight (C_out, C_in, K, K)) or a join of stages (add).
    ops: shape ops applied first (flatten, sumpool; a concat first joins several inputs). in_shape:
    the shape of the activations it receives (one input; default: the synapse's input); in_shapes:
    one shape per input (several); shift: the stage's power of two. bias: beta (C_out,), per-step
    bias mantissa (added on each integration step: numerics.Timing). slope: sigma (C_out,) >= 1,
    potential units per firing step; None for the read-out. window_steps: T_n of a hidden layer;
    None for the read-out. logit_scale: float value of one unit of V (read-out; 1.0 elsewhere).
    inputs: names of the layers (or INPUT) it receives, one per input of its stage; None: the layer
    listed before it in its artifact (the sample for the first; :meth:`Artifact.edges`).
    """

    name: str
    synapse: Synapse
    bias: np.ndarray
    slope: np.ndarray | None
    window_steps: int | None
    readout: bool
    logit_scale: float = 1.0
    ops: tuple = ()
    in_shape: tuple | None = None
    inputs: tuple | None = None
    in_shapes: tuple | None = None
    shift: int = 0

    def __post_init__(self):
        where = f"layer {self.name!r}"
        _check_layer_fields(where, self.name, self.window_steps, self.readout, self.logit_scale)
        _require(isinstance(self.synapse, Synapse), f"{where}: synapse must be a hwtune.layers Synapse (Dense, Conv2d, ...)")
        for leaf in self.synapse.leaves():
            leaf.weight = _int_array(leaf.weight, where, "weight")
        shapes = self.in_shapes if self.in_shapes is not None else (None if self.in_shape is None else (self.in_shape,))
        _require(self.in_shape is None or self.in_shapes is None or
                 [list(s) for s in self.in_shapes] == [list(self.in_shape)],
                 f"{where}: in_shape {short(self.in_shape)} and in_shapes {short(self.in_shapes)} disagree")
        if shapes is not None:
            _require(isinstance(shapes, (tuple, list)) and len(shapes) > 0,
                     f"{where}: in_shapes must list one shape per input, got {short(shapes)}")
            shapes = tuple(_shape(s, where, "in_shape") for s in shapes)
            for shape in shapes:
                _require(math.prod(shape) <= MAX_LAYER_ENTRIES,
                         f"{where}: in_shape {shape} has more than hwtune's limit of {MAX_LAYER_ENTRIES:,} entries")
        try:
            self.stage = Stage(self.synapse, self.ops, shapes, self.shift)
        except OpError as e:
            raise ArtifactError(f"{where}: {e}") from None
        self.ops, self.in_shapes, self.shift = self.stage.ops, self.stage.in_shapes, self.stage.shift
        self.in_shape = self.in_shapes[0] if self.arity == 1 else None
        if self.inputs is not None:
            _require(isinstance(self.inputs, (tuple, list)) and all(isinstance(n, str) for n in self.inputs),
                     f"{where}: inputs must be a list of layer names, got {short(self.inputs)}")
            _require(len(self.inputs) == self.arity,
                     f"{where}: takes {self.arity} input(s), got {len(self.inputs)}: {short(list(self.inputs))}")
            self.inputs = tuple(self.inputs)
        channels = self.synapse.out_channels
        self.bias = _int_array(self.bias, where, "bias", (channels,))
        if self.readout:
            _require(self.slope is None, f"{where}: the read-out has no slope, got one")
        else:
            _require(self.slope is not None, f"{where}: a hidden layer needs a slope (sigma)")
            self.slope = _int_array(self.slope, where, "slope", (channels,))
            bad = np.flatnonzero(self.slope < 1)
            if bad.size:
                raise ArtifactError(f"{where}: slope of {self.unit} {bad[0]} is {self.slope[bad[0]]}, must be >= 1")
        if self.window_steps is not None:
            self.window_steps = int(self.window_steps)
        self.readout = bool(self.readout)
        self.logit_scale = float(self.logit_scale)

    @property
    def arity(self) -> int:
        """How many layers' activations the layer receives: its stage's inputs."""
        return self.stage.arity

    @property
    def weight(self) -> np.ndarray:
        """The weights of a layer with one synapse (a join has one per branch: :meth:`leaves`)."""
        return self.synapse.weight

    def leaves(self) -> list[Synapse]:
        """The synapses holding the layer's weights, in order."""
        return self.stage.leaves()

    @property
    def unit(self) -> str:
        """What one bias/slope entry belongs to: a neuron (dense) or a channel (conv)."""
        return "channel" if len(self.out_shape) > 1 else "neuron"

    @property
    def out_shape(self) -> tuple:
        return self.stage.out_shape

    @property
    def n_in(self) -> int:
        return sum(self.stage.n_in)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    def abs_sums(self, weights=None) -> np.ndarray:
        """sum |q| over each output channel's presynaptic activations (C_out,): pooled inputs counted
        as often as they are summed, branches by their power of two (hwtune.layers.stage)."""
        return self.stage.abs_sums(weights)

    def fan_in(self) -> np.ndarray:
        """Presynaptic neurons (nonzero synapses) of an interior neuron of each output channel (C_out,)."""
        return self.stage.fan_in()

    def fan_out(self) -> list[np.ndarray]:
        """Synaptic events of one spike of each presynaptic neuron, one flat array per input."""
        return self.stage.fan_out()

    def potential(self, ks, steps_in: int, k_max: int | None = None, weights=None,
                  exact_float: bool = False) -> np.ndarray:
        """V (B, *out_shape) = stage(k_1, ..., k_n) + beta T, exact; ks: one array per input (a single
        array for one input), (B, n) or (B, *in_shape), integer valued, 0 <= k <= k_max (default ``steps_in``,
        T: the integration steps, numerics.Timing); ``weights``: a device instance's weights per leaf
        instead of q (hwtune.device_noise). Computed in the cheapest type in which every partial sum and
        V itself are exact (layers.exact_dtype of the worst case |V| + 1, so |V| < 2^p: numerics.fire
        stays exact on it); returned in it with ``exact_float`` (the fast emulator keeps it across
        layers), else int64."""
        V = self.prepare_potential(steps_in, k_max, weights)(ks)
        return V if exact_float else V.astype(np.int64, copy=False)

    def prepare_potential(self, steps_in: int, k_max: int | None = None, weights=None):
        """ks -> :meth:`potential` (ks, steps_in, k_max, weights, exact_float=True) for activations
        0 <= k <= k_max, with what depends only on the layer done once, for many batches (the fast
        emulator's): the exact type from the worst case, the offset beta T in it, the stage's kernels
        (hwtune.layers.engine: weights converted or prepacked, chosen from the bound k_max)."""
        offset = self.bias * steps_in
        x_max = int(steps_in if k_max is None else k_max)
        worst = int(self.abs_sums(weights).max(initial=0)) * x_max + int(np.abs(offset).max(initial=0))
        dtype = exact_dtype(worst + 1)
        stage = self.stage.prepare(dtype, x_max, weights)
        offset = per_channel(offset, len(self.out_shape) + 1).astype(dtype)

        def potential(ks) -> np.ndarray:
            ks = list(ks) if isinstance(ks, (list, tuple)) else [ks]
            V = stage(ks)
            V += offset
            return V
        return potential

    def geometry(self):
        """What noise draws need (hwtune.device_noise.Geometry): each leaf's weight shape, unshared over
        output positions for a convolution, the neurons, whether the layer spikes."""
        return Geometry(weight_shapes=tuple(leaf.weight.shape + tuple(self.out_shape[1:]) for leaf in self.leaves()),
                        neurons=self.n_out, hidden=not self.readout)


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast over (B, C) or (B, C, H, W)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def dense_layer(name: str, weight, bias, slope, window_steps, readout: bool, logit_scale: float = 1.0) -> ArtifactLayer:
    """A layer with one dense synapse over a flat input (the only kind of hwtune 0.1 artifacts)."""
    return ArtifactLayer(name=name, synapse=Dense(weight=np.asarray(weight)), bias=bias, slope=slope,
                         window_steps=window_steps, readout=readout, logit_scale=logit_scale)


@dataclass
class Artifact:
    """A deployable integer TTFS network: a graph of layers, listed in topological order, the read-out last.

    input_shape: shape of one sample; input_steps: T_0; synaptic_delay: d (steps); weight_bits,
    membrane_bits: signed register widths of the target; overflow: what the target does when u or v
    leaves membrane_bits ("error", "saturate" or "wrap"); meta: JSON-serialisable provenance (target
    spec, source model, dataset, resource map...).
    """

    layers: list[ArtifactLayer]
    input_shape: tuple
    input_steps: int
    synaptic_delay: int
    weight_bits: int
    membrane_bits: int
    overflow: str = "error"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_artifact_fields("artifact", self.input_shape, self.input_steps, self.synaptic_delay,
                               self.weight_bits, self.membrane_bits, self.overflow, self.meta)
        self.input_shape = tuple(int(n) for n in self.input_shape)
        self.layers = list(self.layers)
        _require(len(self.layers) > 0 and all(isinstance(l, ArtifactLayer) for l in self.layers),
                 "artifact: layers must be a non-empty list of ArtifactLayer")
        names = [l.name for l in self.layers]
        _require(len(set(names)) == len(names), f"artifact: layer names must be unique, got {short(names)}")
        readouts = [l.name for l in self.layers if l.readout]
        _require(readouts == [self.layers[-1].name] and len(readouts) == 1,
                 f"artifact: exactly one read-out layer, the last one, is required; read-outs: {short(readouts)}")
        self._check_graph()
        self.timing = numerics.Timing(self.window_steps, self.synaptic_delay, self.sources())

    def edges(self) -> list[tuple[str, ...]]:
        """Each layer's inputs: its own ``inputs``, else the layer listed before it (the sample for the
        first). Resolved here, not written onto the layers, so a layer may serve in several artifacts."""
        return [layer.inputs if layer.inputs is not None else ((self.layers[i - 1].name,) if i else (INPUT,))
                for i, layer in enumerate(self.layers)]

    def sources(self) -> list[tuple[int, ...]]:
        """Each layer's inputs as node indices: 0 the sample, n the n-th layer (1-based), the order of
        activations in a RunResult (the graph's one topological order)."""
        index = {INPUT: 0, **{layer.name: n + 1 for n, layer in enumerate(self.layers)}}
        return [tuple(index[name] for name in inputs) for inputs in self.edges()]

    def _check_graph(self) -> None:
        """Check the edges: each names the sample or an earlier layer (topological order, hence no
        cycle), shapes agree along it, and every layer but the read-out feeds another (no dead end)."""
        shapes, consumed = {INPUT: self.input_shape}, set()
        for layer, inputs in zip(self.layers, self.edges()):
            _require(len(inputs) == layer.arity, f"layer {layer.name!r}: takes {layer.arity} input(s), the artifact "
                                                 f"gives it {len(inputs)}")
            for source, in_shape in zip(inputs, layer.in_shapes):
                _require(source in shapes, f"layer {layer.name!r}: input {source!r} is not the sample ({INPUT!r}) or a "
                                           "layer listed before it")
                shape, consumed = shapes[source], consumed | {source}
                # a layer reads its input in (C, H, W) order: a flat in_shape takes any shape of that size
                if in_shape != shape and not (len(in_shape) == 1 and math.prod(in_shape) == math.prod(shape)):
                    given = "the input" if source == INPUT else f"layer {source!r}"
                    raise ArtifactError(f"layer {layer.name!r}: takes shape {in_shape} ({math.prod(in_shape)} inputs) "
                                        f"but {given} gives shape {shape} ({math.prod(shape)} outputs)")
            shapes[layer.name] = layer.out_shape
        unused = [name for name in (INPUT, *(l.name for l in self.hidden)) if name not in consumed]
        _require(not unused, f"artifact: {short(unused)} feed(s) no layer: every layer but the read-out must")

    @property
    def n_in(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    @property
    def hidden(self) -> list[ArtifactLayer]:
        return self.layers[:-1]

    @property
    def window_steps(self) -> list[int]:
        """[T_0, T_1, ..., T_N]: the input window and each hidden layer's window (steps)."""
        return [self.input_steps] + [l.window_steps for l in self.hidden]

    @property
    def schedule(self) -> list[int]:
        """Firing-phase starts F_0..F_{N+1} (steps) of the sample and every layer (numerics.Timing)."""
        return list(self.timing.starts)

    @property
    def latency_steps(self) -> int:
        """Steps from the first input step to the read-out: F_{N+1}."""
        return self.timing.latency

    def state_bounds(self) -> list[np.ndarray]:
        """Worst-case |u|, |v|, theta per output channel of each layer (numerics.state_bound)."""
        return [numerics.state_bound(l.abs_sums(), l.bias, self.timing.steps_in(n), l.slope,
                                     0 if l.readout else l.window_steps)
                for n, l in enumerate(self.layers)]

    def fan_out(self) -> list[np.ndarray]:
        """Synaptic events of one spike of each neuron of the sample and of every hidden layer (one flat
        array per node, in RunResult order): the sum over every stage that reads it."""
        fans = [np.zeros(self.n_in, dtype=np.int64)] + [np.zeros(l.n_out, dtype=np.int64) for l in self.hidden]
        for layer, sources in zip(self.layers, self.sources()):
            for p, fan in zip(sources, layer.fan_out()):
                fans[p] += fan
        return fans

    def input_activations(self, k0) -> np.ndarray:
        """Validate input activations (B, n_in) or (B, *input_shape), integer-valued in [0, T_0].

        Returns an int64 array (B, n_in). Raises ValueError naming the problem.
        """
        a = np.asarray(k0)
        if a.ndim >= 2 and a.shape[1:] == self.input_shape:
            a = a.reshape(a.shape[0], self.n_in)
        if a.ndim != 2 or a.shape[1] != self.n_in:
            raise ValueError(f"input activations must have shape (batch, {self.n_in}) or (batch, "
                             f"*{self.input_shape}), got {a.shape}")
        if np.issubdtype(a.dtype, np.floating):
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise ValueError("input activations must be integers (use numerics.encode_input)")
        elif not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"input activations must be numbers, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > self.input_steps):
            raise ValueError(f"input activations must lie in [0, T_0={self.input_steps}], "
                             f"got [{a.min()}, {a.max()}]")
        return a.astype(np.int64, copy=False)

    # ---- files -------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The JSON part of the on-disk format (arrays are in :meth:`arrays`)."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "input_shape": list(self.input_shape), "input_steps": self.input_steps,
            "synaptic_delay": self.synaptic_delay, "weight_bits": self.weight_bits,
            "membrane_bits": self.membrane_bits, "overflow": self.overflow,
            "schedule": self.schedule, "meta": self.meta,
            "layers": [{"name": l.name, "inputs": list(inputs), **l.stage.to_json(), "window_steps": l.window_steps,
                        "readout": l.readout, "logit_scale": l.logit_scale}
                       for l, inputs in zip(self.layers, self.edges())],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The array part of the on-disk format: layer{i}.weight (then .weight.1, .weight.2, ... for a
        layer with several synapses, in leaf order), layer{i}.bias, layer{i}.slope."""
        out = {}
        for i, l in enumerate(self.layers):
            for b, leaf in enumerate(l.leaves()):
                out[weight_key(i, b)] = leaf.weight
            out[f"layer{i}.bias"] = l.bias
            if l.slope is not None:
                out[f"layer{i}.slope"] = l.slope
        return out

    def save(self, path) -> Path:
        """Write the artifact directory atomically (hwtune.atomic): a complete directory or nothing.

        ``path``: what hwtune.atomic.check_output returned (the CLI checks it before any work), or a
        path, where an existing artifact is replaced and any other existing path refused.
        """
        where = path.path if isinstance(path, Destination) else Path(path)
        if not isinstance(path, Destination) and where.exists() and not (where / JSON_FILE).is_file():
            raise ArtifactError(f"{where}: exists and is not an artifact directory; refusing to overwrite it")
        try:
            text = json.dumps(self.to_json(), indent=1, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{where / JSON_FILE}: meta is not JSON-serialisable ({e})") from e
        with atomic_directory(path) as tmp:
            (tmp / JSON_FILE).write_text(text)
            np.savez(tmp / ARRAYS_FILE, **self.arrays())
        return where

    @classmethod
    def load(cls, path) -> "Artifact":
        """Read and validate an artifact directory; every problem is an ArtifactError naming the file."""
        path = Path(path)
        jpath, apath = path / JSON_FILE, path / ARRAYS_FILE
        _require(path.is_dir(), f"{path}: no such artifact directory")
        doc = _read_json(jpath)
        with _open_npz(apath) as npz:
            keys = [key for i, d in enumerate(doc["layers"]) for key in
                    (*_weight_keys(i, npz.files), f"layer{i}.bias", *(() if d["readout"] else (f"layer{i}.slope",)))]
            arrays = {key: _npz_array(npz, apath, key) for key in keys}
        try:
            layers = [_layer_from_json(i, d, arrays, doc["version"]) for i, d in enumerate(doc["layers"])]
        except (ArtifactError, OpError) as e:
            raise ArtifactError(f"{apath}: {e}") from e
        try:   # the graph (edges, shapes along them, the read-out) is the JSON's
            return cls(layers=layers, input_shape=tuple(doc["input_shape"]), input_steps=doc["input_steps"],
                       synaptic_delay=doc["synaptic_delay"], weight_bits=doc["weight_bits"],
                       membrane_bits=doc["membrane_bits"], overflow=doc["overflow"], meta=doc["meta"])
        except ArtifactError as e:
            raise ArtifactError(f"{jpath}: {e}") from e


def weight_key(i: int, b: int) -> str:
    """The array name of leaf synapse b of layer i."""
    return f"layer{i}.weight" + (f".{b}" if b else "")


def _weight_keys(i: int, present) -> list[str]:
    """The weight arrays of layer i the file holds: layer{i}.weight, then .weight.1, .weight.2, ..."""
    keys = [weight_key(i, 0)]
    while weight_key(i, len(keys)) in present:
        keys.append(weight_key(i, len(keys)))
    return keys


def _layer_from_json(i: int, d: dict, arrays: dict, version: int) -> ArtifactLayer:
    where = f"layer {d['name']!r}"
    weights = [_int_array(arrays[key], where, "weight") for key in _weight_keys(i, arrays)]
    fields = dict(name=d["name"], bias=arrays[f"layer{i}.bias"], slope=arrays.get(f"layer{i}.slope"),
                  window_steps=d["window_steps"], readout=d["readout"], logit_scale=d["logit_scale"],
                  inputs=d["inputs"] if version >= 3 else None)
    if version == 1:           # hwtune 0.1: every layer a dense matrix over the flat activations
        _require(weights[0].ndim == 2 and list(d["shape"]) == list(weights[0].shape),
                 f"{where}: shape {short(d['shape'])} does not match the weight {list(weights[0].shape)}")
        return ArtifactLayer(synapse=Dense(weight=weights[0]), **fields)
    taken = iter(weights)
    try:
        stage = Stage.from_json(d, lambda: next(taken))
    except StopIteration:
        raise ArtifactError(f"{where}: its synapses need more weight arrays than the {len(weights)} stored") from None
    except OpError as e:
        raise ArtifactError(f"{where}: {e}") from None
    _require(next(taken, None) is None, f"{where}: {len(weights)} weight arrays stored, its synapses take "
                                        f"{len(stage.leaves())}")
    return ArtifactLayer(synapse=stage.synapse, ops=stage.ops, in_shapes=stage.in_shapes, shift=stage.shift, **fields)


_TOP_KEYS = ("format", "version", "input_shape", "input_steps", "synaptic_delay", "weight_bits",
             "membrane_bits", "overflow", "meta", "layers")
_LAYER_KEYS = {1: ("name", "shape", "window_steps", "readout", "logit_scale"),
               2: ("name", "in_shape", "ops", "synapse", "window_steps", "readout", "logit_scale"),
               3: ("name", "inputs", "in_shape", "ops", "synapse", "window_steps", "readout", "logit_scale"),
               4: ("name", "inputs", "ops", "synapse", "window_steps", "readout", "logit_scale")}


def _read_json(jpath: Path) -> dict:
    """Parse and check the JSON part (keys and scalar fields), naming ``jpath`` in every error."""
    text = read_file(jpath, ArtifactError, "artifact file", MAX_JSON_BYTES)
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"{jpath}: unreadable ({str(e)[:200]})") from e
    _require(isinstance(doc, dict), f"{jpath}: expected a JSON object")
    missing = [k for k in _TOP_KEYS if k not in doc]
    _require(not missing, f"{jpath}: missing keys {missing}")
    _require(doc["format"] == FORMAT, f"{jpath}: format {short(doc['format'])}, expected {FORMAT!r}")
    _require(doc["version"] in READABLE_VERSIONS and not isinstance(doc["version"], bool),
             f"{jpath}: format version {short(doc['version'])} is not one this hwtune reads {READABLE_VERSIONS}: "
             "export the model again with this hwtune (`hwtune export MODEL`)")
    _check_artifact_fields(str(jpath), doc["input_shape"], doc["input_steps"], doc["synaptic_delay"],
                           doc["weight_bits"], doc["membrane_bits"], doc["overflow"], doc["meta"])
    _require(isinstance(doc["layers"], list) and doc["layers"], f"{jpath}: layers must be a non-empty list")
    for i, d in enumerate(doc["layers"]):
        where = f"{jpath}: layer {i}"
        _require(isinstance(d, dict), f"{where}: expected a JSON object")
        missing = [k for k in _LAYER_KEYS[doc["version"]] if k not in d]
        _require(not missing, f"{where} ({short(d.get('name', '?'))}): missing keys {missing}")
        _check_layer_fields(f"{where} ({short(d['name'])})", d["name"], d["window_steps"], d["readout"],
                            d["logit_scale"])
        if doc["version"] >= 2:
            _require(isinstance(d["ops"], list), f"{where}: ops must be a list")
        if doc["version"] >= 3:
            _require(isinstance(d["inputs"], list) and all(isinstance(n, str) for n in d["inputs"]),
                     f"{where} ({short(d['name'])}): inputs must be a list of layer names, got {short(d['inputs'])}")
    return doc


def _open_npz(apath: Path):
    """The artifact's arrays (hwtune.npzfile: members, headers and sizes checked before any is
    read; at most MAX_LAYER_ENTRIES values per array and MAX_MODEL_ENTRIES all arrays together)."""
    return open_npz(apath, ArtifactError, 8 * MAX_MODEL_ENTRIES, MAX_LAYER_ENTRIES, MAX_MODEL_ENTRIES)


def _npz_array(npz, apath: Path, key: str) -> np.ndarray:
    array = npz.read(key)
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(array)), array.shape))
        raise ArtifactError(f"{apath}: array {key!r} holds {int(array.max())} at {list(index)}, beyond the int64 "
                            "range hwtune computes in")
    return array


# ---- export-time hardware checks -------------------------------------------------------------

def weight_violations(artifact: Artifact) -> list[str]:
    """Weights outside the signed ``weight_bits`` range, one line per offending neuron or channel."""
    lo, hi = numerics.signed_range(artifact.weight_bits)
    out = []
    for layer, leaf in ((layer, leaf) for layer in artifact.layers for leaf in layer.leaves()):
        q = leaf.weight.reshape(leaf.out_channels, -1)
        bad = (q < lo) | (q > hi)
        for i in np.flatnonzero(bad.any(axis=1)):
            j = int(np.flatnonzero(bad[i])[0])
            out.append(f"layer {layer.name!r} {layer.unit} {i}: weight {q[i, j]} (input {j}) is outside "
                       f"the {artifact.weight_bits}-bit signed range [{lo}, {hi}] "
                       f"({int(bad[i].sum())} weights of this {layer.unit} are)")
    return out


def membrane_violations(artifact: Artifact) -> list[str]:
    """Neurons (channels) whose worst-case u, v or theta (numerics.state_bound) can leave ``membrane_bits``."""
    limit = numerics.signed_range(artifact.membrane_bits)[1]
    out = []
    for layer, bound in zip(artifact.layers, artifact.state_bounds()):
        for i in np.flatnonzero(bound > limit):
            out.append(f"layer {layer.name!r} {layer.unit} {i}: membrane worst case {bound[i]} exceeds the "
                       f"{artifact.membrane_bits}-bit signed limit {limit}")
    return out


def violations(artifact: Artifact) -> list[str]:
    """All export-time register violations (weights, membrane), as readable lines. Chip resources
    (cores, memory, fan-in) are the mapper's (hwtune.mapper)."""
    return weight_violations(artifact) + membrane_violations(artifact)


def raise_violations(found: list[str], what: str) -> None:
    """Raise an ArtifactError listing the first few of ``found`` (nothing when empty)."""
    if found:
        more = len(found) - MAX_LISTED_VIOLATIONS
        lines = found[:MAX_LISTED_VIOLATIONS] + ([f"... and {more} more"] if more > 0 else [])
        raise ArtifactError(f"{len(found)} {what}:\n  " + "\n  ".join(lines))


def check(artifact: Artifact) -> None:
    """Export-time register checks; raises ArtifactError listing the first few violations."""
    raise_violations(violations(artifact), "hardware violation(s)")

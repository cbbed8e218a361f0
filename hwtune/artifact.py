"""The deployable integer model: integer arrays + a time schedule, numpy only (no torch).

An :class:`Artifact` is pure data (see docs/design.md, "Integer model"). For hidden layer n
(n = 1..N) with input window T_{n-1} and own window T_n, the membrane at the end of
integration and the activation are

    V_i = sum_j q_ij k_j + beta_i * T_{n-1}          (potential units)
    k_i = clip(floor(V_i / sigma_i), 0, T_n)          (steps; numerics.fire)

and the read-out (last layer, no spikes) gives the logits V_i (float: logit_scale * V_i).
Execution lives in :mod:`hwtune.backends`; this module only represents, validates, saves
and loads, and runs the export-time hardware checks (:func:`check`).

On disk an artifact is a directory holding ``artifact.json`` (scalars, schedule, metadata)
and ``arrays.npz`` (``layer{i}.weight``, ``layer{i}.bias``, ``layer{i}.slope``).
"""
from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hwtune import numerics
from hwtune.atomic import atomic_directory

FORMAT = "hwtune-artifact"
FORMAT_VERSION = 1
JSON_FILE = "artifact.json"
ARRAYS_FILE = "arrays.npz"
OVERFLOW_MODES = ("error", "saturate", "wrap")
#: How many violations :func:`check` spells out before summarising the rest.
MAX_LISTED_VIOLATIONS = 5


class ArtifactError(ValueError):
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


def _check_layer_fields(where: str, name, window_steps, readout, logit_scale) -> None:
    """Scalar fields of one layer (shared by the constructor and the JSON reader)."""
    _require(isinstance(name, str) and name != "", f"{where}: name must be a non-empty string, got {name!r}")
    _require(isinstance(readout, (bool, np.bool_)), f"{where}: readout must be a bool, got {readout!r}")
    if readout:
        _require(window_steps is None, f"{where}: the read-out has no window, got window_steps={window_steps!r}")
    else:
        _require(_is_int(window_steps) and window_steps >= 1,
                 f"{where}: window_steps must be an integer >= 1, got {window_steps!r}")
    _require(isinstance(logit_scale, (int, float, np.floating)) and not isinstance(logit_scale, bool)
             and math.isfinite(logit_scale), f"{where}: logit_scale must be a finite number, got {logit_scale!r}")


def _check_artifact_fields(where: str, input_shape, input_steps, synaptic_delay, weight_bits,
                           membrane_bits, overflow, meta) -> None:
    """Scalar fields of an artifact (shared by the constructor and the JSON reader)."""
    _require(isinstance(input_shape, (tuple, list)) and len(input_shape) > 0
             and all(_is_int(n) and n >= 1 for n in input_shape),
             f"{where}: input_shape must be a non-empty tuple of positive integers, got {input_shape!r}")
    for key, value, lo, hi in (("input_steps", input_steps, 1, None), ("synaptic_delay", synaptic_delay, 1, None),
                               ("weight_bits", weight_bits, 1, 32), ("membrane_bits", membrane_bits, 2, 63)):
        _require(_is_int(value) and value >= lo and (hi is None or value <= hi),
                 f"{where}: {key} must be an integer in [{lo}, {hi or 'inf'}], got {value!r}")
    _require(overflow in OVERFLOW_MODES, f"{where}: overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
    _require(isinstance(meta, dict), f"{where}: meta must be a dict, got {type(meta).__name__}")


@dataclass
class ArtifactLayer:
    """One layer of integer weights, biases and slopes.

    weight: q (out, in), signed integer mantissas. bias: beta (out,), per-step bias mantissa
    (added on each of the T_{n-1} integration steps). slope: sigma (out,) >= 1, potential units
    per firing step; None for the read-out. window_steps: T_n of a hidden layer; None for the
    read-out. logit_scale: float value of one unit of V (read-out; 1.0 elsewhere).
    Arrays are stored as int64 copies.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    slope: np.ndarray | None
    window_steps: int | None
    readout: bool
    logit_scale: float = 1.0

    def __post_init__(self):
        where = f"layer {self.name!r}"
        _check_layer_fields(where, self.name, self.window_steps, self.readout, self.logit_scale)
        self.weight = _int_array(self.weight, where, "weight")
        _require(self.weight.ndim == 2, f"{where}: weight must be 2-D (out, in), got shape {self.weight.shape}")
        self.bias = _int_array(self.bias, where, "bias", (self.n_out,))
        if self.readout:
            _require(self.slope is None, f"{where}: the read-out has no slope, got one")
        else:
            _require(self.slope is not None, f"{where}: a hidden layer needs a slope (sigma)")
            self.slope = _int_array(self.slope, where, "slope", (self.n_out,))
            bad = np.flatnonzero(self.slope < 1)
            if bad.size:
                raise ArtifactError(f"{where}: slope of neuron {bad[0]} is {self.slope[bad[0]]}, must be >= 1")
        if self.window_steps is not None:
            self.window_steps = int(self.window_steps)
        self.readout = bool(self.readout)
        self.logit_scale = float(self.logit_scale)

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def fan_in(self) -> np.ndarray:
        """Number of nonzero weights of each neuron (out,)."""
        return np.count_nonzero(self.weight, axis=1)

    def fan_out(self) -> np.ndarray:
        """Number of nonzero weights leaving each input (in,): synaptic events per input spike."""
        return np.count_nonzero(self.weight, axis=0)


@dataclass
class Artifact:
    """A deployable integer TTFS network: hidden layers then exactly one read-out (last).

    input_shape: shape of one sample (flattened to prod(input_shape) inputs); input_steps: T_0;
    synaptic_delay: d (steps); weight_bits, membrane_bits: signed register widths of the
    target; overflow: what the target does when u or v leaves membrane_bits ("error",
    "saturate" or "wrap"); meta: JSON-serialisable provenance (target name, source model...).
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
        _require(len(set(names)) == len(names), f"artifact: layer names must be unique, got {names}")
        readouts = [l.name for l in self.layers if l.readout]
        _require(readouts == [self.layers[-1].name] and len(readouts) == 1,
                 f"artifact: exactly one read-out layer, the last one, is required; read-outs: {readouts}")
        n_prev, prev = self.n_in, f"the input (shape {self.input_shape})"
        for layer in self.layers:
            _require(layer.n_in == n_prev, f"layer {layer.name!r}: weight has {layer.n_in} inputs but "
                                           f"{prev} has {n_prev} outputs")
            n_prev, prev = layer.n_out, f"layer {layer.name!r}"

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
        """Firing-phase starts F_0..F_{N+1} (steps); layer n integrates in [F_{n-1} + d, F_n)."""
        return numerics.schedule(self.window_steps, self.synaptic_delay)

    @property
    def latency_steps(self) -> int:
        """Steps from the first input step to the read-out: F_{N+1} = sum_n (T_n + d)."""
        return self.schedule[-1]

    def state_bounds(self) -> list[np.ndarray]:
        """Worst-case |u|, |v|, theta of each layer's neurons (numerics.state_bound)."""
        steps = self.window_steps
        return [numerics.state_bound(l.weight, l.bias, steps[i], l.slope, 0 if l.readout else l.window_steps)
                for i, l in enumerate(self.layers)]

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
            "layers": [{"name": l.name, "shape": [l.n_out, l.n_in], "window_steps": l.window_steps,
                        "readout": l.readout, "logit_scale": l.logit_scale} for l in self.layers],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The array part of the on-disk format: layer{i}.weight / .bias / .slope."""
        out = {}
        for i, l in enumerate(self.layers):
            out[f"layer{i}.weight"], out[f"layer{i}.bias"] = l.weight, l.bias
            if l.slope is not None:
                out[f"layer{i}.slope"] = l.slope
        return out

    def save(self, path) -> Path:
        """Write the artifact directory atomically (hwtune.atomic): a complete directory or nothing.

        An existing artifact at ``path`` is replaced; any other existing path is refused.
        """
        path = Path(path)
        if path.exists() and not (path / JSON_FILE).is_file():
            raise ArtifactError(f"{path}: exists and is not an artifact directory; refusing to overwrite it")
        try:
            text = json.dumps(self.to_json(), indent=1, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{path / JSON_FILE}: meta is not JSON-serialisable ({e})") from e
        with atomic_directory(path) as tmp:
            (tmp / JSON_FILE).write_text(text)
            np.savez(tmp / ARRAYS_FILE, **self.arrays())
        return path

    @classmethod
    def load(cls, path) -> "Artifact":
        """Read and validate an artifact directory; every problem is an ArtifactError naming the file."""
        path = Path(path)
        jpath, apath = path / JSON_FILE, path / ARRAYS_FILE
        _require(path.is_dir(), f"{path}: no such artifact directory")
        doc = _read_json(jpath)
        keys = [(f"layer{i}.{part}") for i, d in enumerate(doc["layers"])
                for part in (("weight", "bias") if d["readout"] else ("weight", "bias", "slope"))]
        with _open_npz(apath) as npz:
            arrays = {key: _npz_array(npz, apath, key) for key in keys}
        try:
            layers = [ArtifactLayer(name=d["name"], weight=arrays[f"layer{i}.weight"], bias=arrays[f"layer{i}.bias"],
                                    slope=arrays.get(f"layer{i}.slope"), window_steps=d["window_steps"],
                                    readout=d["readout"], logit_scale=d["logit_scale"])
                      for i, d in enumerate(doc["layers"])]
            art = cls(layers=layers, input_shape=tuple(doc["input_shape"]), input_steps=doc["input_steps"],
                      synaptic_delay=doc["synaptic_delay"], weight_bits=doc["weight_bits"],
                      membrane_bits=doc["membrane_bits"], overflow=doc["overflow"], meta=doc["meta"])
        except ArtifactError as e:
            raise ArtifactError(f"{apath}: {e}") from e
        for d, layer in zip(doc["layers"], art.layers):
            _require(list(d["shape"]) == [layer.n_out, layer.n_in],
                     f"{jpath}: layer {layer.name!r}: shape {d['shape']} does not match the weight "
                     f"{[layer.n_out, layer.n_in]} in {ARRAYS_FILE}")
        return art


_TOP_KEYS = ("format", "version", "input_shape", "input_steps", "synaptic_delay", "weight_bits",
             "membrane_bits", "overflow", "meta", "layers")
_LAYER_KEYS = ("name", "shape", "window_steps", "readout", "logit_scale")


def _read_json(jpath: Path) -> dict:
    """Parse and check the JSON part (keys and scalar fields), naming ``jpath`` in every error."""
    try:
        doc = json.loads(jpath.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{jpath}: file missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{jpath}: unreadable ({e})") from e
    _require(isinstance(doc, dict), f"{jpath}: expected a JSON object")
    missing = [k for k in _TOP_KEYS if k not in doc]
    _require(not missing, f"{jpath}: missing keys {missing}")
    _require(doc["format"] == FORMAT and doc["version"] == FORMAT_VERSION,
             f"{jpath}: format {doc['format']!r} version {doc['version']!r}, expected {FORMAT!r} "
             f"version {FORMAT_VERSION}")
    _check_artifact_fields(str(jpath), doc["input_shape"], doc["input_steps"], doc["synaptic_delay"],
                           doc["weight_bits"], doc["membrane_bits"], doc["overflow"], doc["meta"])
    _require(isinstance(doc["layers"], list) and doc["layers"], f"{jpath}: layers must be a non-empty list")
    for i, d in enumerate(doc["layers"]):
        where = f"{jpath}: layer {i}"
        _require(isinstance(d, dict), f"{where}: expected a JSON object")
        missing = [k for k in _LAYER_KEYS if k not in d]
        _require(not missing, f"{where} ({d.get('name', '?')!r}): missing keys {missing}")
        _check_layer_fields(f"{where} ({d['name']!r})", d["name"], d["window_steps"], d["readout"],
                            d["logit_scale"])
    return doc


def _open_npz(apath: Path):
    try:
        return np.load(apath, allow_pickle=False)
    except FileNotFoundError:
        raise ArtifactError(f"{apath}: file missing") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{apath}: unreadable ({e})") from e


def _npz_array(npz, apath: Path, key: str) -> np.ndarray:
    _require(key in npz.files, f"{apath}: array {key!r} missing")
    try:
        return npz[key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{apath}: array {key!r} unreadable ({e})") from e


# ---- export-time hardware checks -------------------------------------------------------------

def weight_violations(artifact: Artifact) -> list[str]:
    """Weights outside the signed ``weight_bits`` range, one line per offending neuron."""
    lo, hi = numerics.signed_range(artifact.weight_bits)
    out = []
    for layer in artifact.layers:
        bad = (layer.weight < lo) | (layer.weight > hi)
        for i in np.flatnonzero(bad.any(axis=1)):
            j = int(np.flatnonzero(bad[i])[0])
            out.append(f"layer {layer.name!r} neuron {i}: weight {layer.weight[i, j]} from input {j} is outside "
                       f"the {artifact.weight_bits}-bit signed range [{lo}, {hi}] "
                       f"({int(bad[i].sum())} weights of this neuron are)")
    return out


def membrane_violations(artifact: Artifact) -> list[str]:
    """Neurons whose worst-case u, v or theta (numerics.state_bound) can leave ``membrane_bits``."""
    limit = numerics.signed_range(artifact.membrane_bits)[1]
    out = []
    for layer, bound in zip(artifact.layers, artifact.state_bounds()):
        for i in np.flatnonzero(bound > limit):
            out.append(f"layer {layer.name!r} neuron {i}: membrane worst case {bound[i]} exceeds the "
                       f"{artifact.membrane_bits}-bit signed limit {limit}")
    return out


def size_violations(artifact: Artifact, max_fan_in: int | None = None,
                    max_neurons_per_layer: int | None = None) -> list[str]:
    """Neurons with more nonzero weights than ``max_fan_in``; layers with too many neurons."""
    out = []
    for layer in artifact.layers:
        if max_neurons_per_layer is not None and layer.n_out > max_neurons_per_layer:
            out.append(f"layer {layer.name!r}: {layer.n_out} neurons exceed the limit {max_neurons_per_layer}")
        if max_fan_in is not None:
            fan_in = layer.fan_in()
            for i in np.flatnonzero(fan_in > max_fan_in):
                out.append(f"layer {layer.name!r} neuron {i}: fan-in {fan_in[i]} exceeds the limit {max_fan_in}")
    return out


def violations(artifact: Artifact, max_fan_in: int | None = None,
               max_neurons_per_layer: int | None = None) -> list[str]:
    """All export-time hardware violations (weights, membrane, sizes), as readable lines."""
    return (weight_violations(artifact) + membrane_violations(artifact)
            + size_violations(artifact, max_fan_in, max_neurons_per_layer))


def raise_violations(found: list[str], what: str) -> None:
    """Raise an ArtifactError listing the first few of ``found`` (nothing when empty)."""
    if found:
        more = len(found) - MAX_LISTED_VIOLATIONS
        lines = found[:MAX_LISTED_VIOLATIONS] + ([f"... and {more} more"] if more > 0 else [])
        raise ArtifactError(f"{len(found)} {what}:\n  " + "\n  ".join(lines))


def check(artifact: Artifact, max_fan_in: int | None = None, max_neurons_per_layer: int | None = None) -> None:
    """Export-time hardware checks; raises ArtifactError listing the first few violations."""
    raise_violations(violations(artifact, max_fan_in, max_neurons_per_layer), "hardware violation(s)")


# ---- test utility ----------------------------------------------------------------------------

def random_artifact(rng: np.random.Generator, sizes: list[int], bits: int = 8, steps=8, delay: int = 1,
                    membrane_bits: int | None = None, density: float = 0.8, slope: str = "per-neuron") -> Artifact:
    """A random artifact for tests and benchmarks (no training involved).

    sizes: [n_in, n_1, ..., n_N, n_out]; steps: T for every window or a list [T_0, ..., T_N];
    bits: weight bits (uniform mantissas, a fraction ``1 - density`` set to zero); delay: d.
    Slopes are drawn around the typical |V| / T_n so a layer mixes silent, intermediate and
    saturating (V >= sigma T_n) neurons, one per neuron or (slope="per-layer", as a per-layer
    weight scale gives) one per layer; biases have both signs. membrane_bits defaults to the
    smallest width that passes :func:`check`.
    """
    if slope not in ("per-neuron", "per-layer"):
        raise ValueError(f"slope must be 'per-neuron' or 'per-layer', got {slope!r}")
    n_layers = len(sizes) - 1
    steps = [int(steps)] * n_layers if np.isscalar(steps) else [int(t) for t in steps]
    if len(steps) != n_layers:
        raise ValueError(f"steps needs {n_layers} windows [T_0..T_N] for sizes {sizes}, got {steps}")
    lo, hi = numerics.signed_range(bits)
    layers = []
    for n, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        readout = n == n_layers - 1
        q = rng.integers(lo, hi + 1, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        t_in = steps[n]
        # typical |V| for inputs spread over [0, T_in] with half of them silent
        v_typ = np.sqrt(n_in * density * (hi ** 2 / 3) * (t_in ** 2 / 6)) + 1
        beta_unit = max(1, int(0.5 * v_typ / t_in))
        beta = rng.integers(-beta_unit // 2, beta_unit + 1, size=n_out)
        sigma = None
        if not readout:
            spread = rng.uniform(0.3, 1.5, n_out if slope == "per-neuron" else 1)
            sigma = np.broadcast_to(np.maximum(1, np.round(v_typ * spread / steps[n + 1])), n_out).astype(np.int64)
        layers.append(ArtifactLayer(name=f"fc{n + 1}", weight=q, bias=beta, slope=sigma,
                                    window_steps=None if readout else steps[n + 1], readout=readout))
    art = Artifact(layers=layers, input_shape=(sizes[0],), input_steps=steps[0], synaptic_delay=delay,
                   weight_bits=bits, membrane_bits=63, overflow="error", meta={"source": "random_artifact"})
    if membrane_bits is None:
        membrane_bits = max(2, max(int(b.max()) for b in art.state_bounds()).bit_length() + 1)
    return replace(art, membrane_bits=membrane_bits)

"""Random integer artifacts (no training involved), for what does not depend on accuracy: the
exactness tests and the speed benchmarks (scripts/bench_emulator.py). Dense nets of given sizes,
conv nets from a plan; every one passes hwtune.artifact.check (the smallest membrane width that
does unless one is given)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact, ArtifactLayer, dense_layer
from hwtune.layers import Conv2d, Dense, Flatten, SumPool


def _smallest_membrane(art: Artifact) -> Artifact:
    return replace(art, membrane_bits=max(2, max(int(b.max()) for b in art.state_bounds()).bit_length() + 1))


def _slope(rng, v_typ: float, steps_out: int, n: int, per: str) -> np.ndarray:
    spread = rng.uniform(0.3, 1.5, n if per == "per-neuron" else 1)
    return np.broadcast_to(np.maximum(1, np.round(v_typ * spread / steps_out)), n).astype(np.int64)


def random_artifact(rng: np.random.Generator, sizes: list[int], bits: int = 8, steps=8, delay: int = 1,
                    membrane_bits: int | None = None, density: float = 0.8, slope: str = "per-neuron") -> Artifact:
    """A random dense artifact for tests and benchmarks (no training involved).

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
        sigma = None if readout else _slope(rng, v_typ, steps[n + 1], n_out, slope)
        layers.append(dense_layer(f"fc{n + 1}", q, beta, sigma, None if readout else steps[n + 1], readout))
    art = Artifact(layers=layers, input_shape=(sizes[0],), input_steps=steps[0], synaptic_delay=delay,
                   weight_bits=bits, membrane_bits=63, overflow="error", meta={"source": "random_artifact"})
    return _smallest_membrane(art) if membrane_bits is None else replace(art, membrane_bits=membrane_bits)


def random_conv_artifact(rng: np.random.Generator, input_shape: tuple, plan: list, classes: int, bits: int = 4,
                         steps=6, delay: int = 1, slope: str = "per-neuron", density: float = 0.8) -> Artifact:
    """A random conv artifact for tests: ``plan`` items are ("conv", C_out, K, stride, padding[, groups]),
    ("pool", k) (sum pooling into the next layer) or ("dense", n); a flatten is added before the
    first dense layer and the read-out (``classes`` outputs) ends the net. steps: one T for every
    window or [T_0, ..., T_N]. membrane_bits: the smallest that passes :func:`check`."""
    lo, hi = numerics.signed_range(bits)
    n_layers = sum(item[0] in ("conv", "dense") for item in plan) + 1
    steps = [int(steps)] * n_layers if np.isscalar(steps) else [int(t) for t in steps]
    shape, pending, layers = tuple(input_shape), [], []
    for item in [*plan, ("dense", classes)]:
        if item[0] == "pool":
            pending.append(SumPool(kernel=item[1]))
            continue
        in_shape, n = shape, len(layers)
        for op in pending:
            shape = op.output_shape(shape)
        if item[0] == "dense" and len(shape) != 1:
            pending.append(Flatten())
            shape = (math.prod(shape),)
        if item[0] == "conv":
            _, c_out, k, s, p, *g = item
            g = g[0] if g else 1
            size = (c_out, shape[0] // g, k, k)
            q = rng.integers(lo, hi + 1, size=size) * (rng.random(size) < density)
            synapse = Conv2d(weight=q, in_shape=shape, stride=s, padding=p, groups=g)
        else:
            q = rng.integers(lo, hi + 1, size=(item[1], shape[0])) * (rng.random((item[1], shape[0])) < density)
            synapse = Dense(weight=q)
        readout = n == n_layers - 1
        gain, op_in = 1, in_shape
        for op in pending:
            gain, op_in = gain * op.gain_on(op_in), op.output_shape(op_in)
        fan = q[0].size * gain
        v_typ = np.sqrt(fan * density * (hi ** 2 / 3) * (steps[n] ** 2 / 6)) + 1
        beta_unit = max(1, int(0.5 * v_typ / steps[n]))
        c_out = synapse.out_channels
        layers.append(ArtifactLayer(
            name=f"{synapse.kind}{n + 1}", synapse=synapse, ops=tuple(pending), in_shape=in_shape,
            bias=rng.integers(-beta_unit // 2, beta_unit + 1, size=c_out),
            slope=None if readout else _slope(rng, v_typ, steps[n + 1], c_out, slope),
            window_steps=None if readout else steps[n + 1], readout=readout))
        shape, pending = synapse.output_shape(shape), []
    art = Artifact(layers=layers, input_shape=tuple(input_shape), input_steps=steps[0], synaptic_delay=delay,
                   weight_bits=bits, membrane_bits=63, overflow="error", meta={"source": "random_conv_artifact"})
    return _smallest_membrane(art)

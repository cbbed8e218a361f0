"""Bit-accurate numpy emulator of an :class:`~hwtune.artifact.Artifact`, batched over samples.

Two modes that must agree exactly (tests/test_emulator.py):

- ``"fast"``: the closed form, one matmul per layer (docs/design.md, "Integer model"):
  V = k_{n-1} q^T + beta T_{n-1};  k_n = numerics.fire(V, sigma, T_n).
- ``"stepped"``: the reference, step by step as in docs/design.md, "Time-stepped semantics":
  per neuron registers u, v (``membrane_bits`` signed) and a fired flag; a spike emitted at
  step t arrives at t + d; numerics.integrate in [F_{n-1} + d, F_n), numerics.fire_step in
  [F_n, F_n + T_n). Registers are checked every step; the artifact's ``overflow`` says what
  happens when one leaves its range ("error": raise, "saturate": clip, "wrap": two's complement).

Optional spike-time jitter: every hidden neuron draws delta = round(N(0, (jitter_sigma T_n)^2))
steps (one array (B, n) per hidden layer, in layer order, from Generator(jitter_seed)), applied to
emitted spikes with numerics.jitter; inputs are not jittered. Both modes draw the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact, membrane_violations
from hwtune.backends import RunResult

MODES = ("fast", "stepped")

#: Float types whose matmul is exact on integers: (dtype, largest magnitude every intermediate may reach).
_EXACT_FLOATS = ((np.float32, 2 ** 24), (np.float64, 2 ** 53))


class EmulatorError(ValueError):
    """Bad input to the emulator, or an artifact the requested mode cannot run."""


class MembraneOverflowError(EmulatorError):
    """A u, v or theta register left ``membrane_bits`` with ``overflow="error"``."""


@dataclass
class EmulatorResult(RunResult):
    """A :class:`RunResult` plus the emulator mode and jitter that produced it."""

    mode: str = "fast"
    jitter_sigma: float = 0.0


def emulate(artifact: Artifact, k0, mode: str = "fast", jitter_seed=None,
            jitter_sigma: float = 0.0) -> EmulatorResult:
    """Run ``artifact`` on input activations ``k0`` (B, n_in), integers in [0, T_0].

    k0 comes from numerics.encode_input. Returns activations, spike steps, potentials and the
    read-out logits (int64). ``mode="fast"`` refuses an artifact whose registers could overflow
    (see hwtune.artifact.membrane_violations); ``mode="stepped"`` checks every step instead.
    """
    if mode not in MODES:
        raise EmulatorError(f"mode must be one of {MODES}, got {mode!r}")
    if not (np.isfinite(jitter_sigma) and jitter_sigma >= 0):
        raise EmulatorError(f"jitter_sigma must be a finite number >= 0, got {jitter_sigma!r}")
    try:
        k0 = artifact.input_activations(k0)
    except ValueError as e:
        raise EmulatorError(str(e)) from None
    deltas = _jitter_draws(artifact, len(k0), jitter_seed, jitter_sigma)
    activations, potentials = (_fast if mode == "fast" else _stepped)(artifact, k0, deltas)
    return EmulatorResult(artifact=artifact, activations=activations, potentials=potentials, mode=mode,
                          jitter_sigma=float(jitter_sigma))


def _jitter_draws(artifact: Artifact, batch: int, seed, sigma: float) -> list[np.ndarray] | None:
    """delta (B, n_n) in steps for each hidden layer, or None without jitter."""
    if sigma == 0:
        return None
    rng = np.random.default_rng(seed)
    return [np.round(rng.normal(0.0, sigma * layer.window_steps, size=(batch, layer.n_out))).astype(np.int64)
            for layer in artifact.hidden]


def exact_dtype(bound: int):
    """Cheapest dtype in which a matmul of integers is exact when ``bound`` dominates it.

    IEEE floats with a p-bit significand hold every integer of magnitude <= 2^p, and a sum or
    product of such integers is exact when its true value is again <= 2^p. A matmul (any
    blocking, any order, fused multiply-add or not) only forms products q_ij k_j and partial
    sums of them, each bounded by sum_j |q_ij| |k_j| <= ``bound``; so float32 (p = 24, BLAS) or
    float64 (p = 53) give the exact integer result. Beyond 2^53: int64 (numpy, no BLAS, slow).
    """
    for dtype, limit in _EXACT_FLOATS:
        if bound <= limit:
            return dtype
    return np.int64


def exact_matmul(k: np.ndarray, q: np.ndarray, k_max: int) -> np.ndarray:
    """sum_j q_ij k_j for every row of k, as int64, exactly; k_max bounds |k| (see exact_dtype)."""
    dtype = exact_dtype(int(np.abs(q).sum(axis=1).max(initial=0)) * k_max)
    return (k.astype(dtype, copy=False) @ q.T.astype(dtype)).astype(np.int64, copy=False)


def _fast(artifact: Artifact, k0: np.ndarray, deltas):
    """Closed form, layer by layer: V = k q^T + beta T_{n-1} (int64), k = numerics.fire(V, sigma, T_n)."""
    found = membrane_violations(artifact)
    if found:
        raise EmulatorError(f"fast mode needs an artifact whose registers cannot overflow, but {found[0]}"
                            f"{f' (and {len(found) - 1} more)' if len(found) > 1 else ''}; "
                            "use mode='stepped', which checks every step")
    steps = artifact.window_steps
    k, activations, potentials = k0, [k0], []
    for n, layer in enumerate(artifact.layers):
        V = exact_matmul(k, layer.weight, steps[n]) + layer.bias * steps[n]
        potentials.append(V)
        if layer.readout:
            break
        k = numerics.fire(V, _scalar_if_uniform(layer.slope), layer.window_steps)
        if deltas is not None:
            k = numerics.jitter(k, deltas[n], layer.window_steps)
        activations.append(k)
    return activations, potentials


def _scalar_if_uniform(x: np.ndarray):
    """x[0] as an int when all entries are equal (one slope per layer): numpy divides by a scalar
    about 10x faster than by a per-element divisor. Otherwise x itself."""
    return int(x[0]) if (x == x[0]).all() else x


class _Registers:
    """The overflow rule of ``membrane_bits`` signed registers for one layer."""

    def __init__(self, artifact: Artifact, name: str):
        self.bits, self.mode, self.name = artifact.membrane_bits, artifact.overflow, name
        self.lo, self.hi = numerics.signed_range(self.bits)

    def __call__(self, x: np.ndarray, what: str, step: int) -> np.ndarray:
        if self.mode == "saturate":
            return x.clip(self.lo, self.hi)
        if self.mode == "wrap":
            return (x - self.lo) % (1 << self.bits) + self.lo
        bad = (x < self.lo) | (x > self.hi)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            sample = f" of sample {where[0]}" if x.ndim == 2 else ""
            raise MembraneOverflowError(
                f"layer {self.name!r} neuron {where[-1]}{sample}: {what} = {x[where]} at step {step} leaves the "
                f"{self.bits}-bit signed range [{self.lo}, {self.hi}]")
        return x


def _emission_steps(k: np.ndarray, start: int, steps: int) -> np.ndarray:
    """Global step of each neuron's spike, start + T - k; -1 for silent neurons."""
    return np.where(k > 0, start + steps - k, -1)


#: The stepped mode keeps registers and per-step inputs below this, so int64 sums never wrap.
_STEPPED_HEADROOM = 2 ** 60


def _check_headroom(artifact: Artifact) -> None:
    """Refuse what the int64 stepped mode cannot emulate exactly (far beyond any real chip)."""
    if artifact.membrane_bits > 60:
        raise EmulatorError(f"stepped mode emulates registers of at most 60 bits in int64, "
                            f"got membrane_bits={artifact.membrane_bits}")
    for layer in artifact.layers:
        worst = np.abs(layer.weight).sum(axis=1, dtype=np.float64) + np.abs(layer.bias)
        if layer.slope is not None:
            worst = np.maximum(worst, layer.slope * (layer.window_steps + 1.0))
        if worst.max(initial=0) >= _STEPPED_HEADROOM:
            raise EmulatorError(f"layer {layer.name!r}: weights, bias or threshold reach 2^60 per step; "
                                "the int64 stepped mode cannot emulate them exactly")


def _stepped(artifact: Artifact, k0: np.ndarray, deltas):
    """Time-stepped reference, layer after layer: a layer's neurons advance one global step at a
    time through their integration and firing windows, fed by the previous layer's spikes d steps
    after emission. The net is feed-forward and each layer only listens during its own window, so
    this equals advancing all layers together; it also lets jitter move a spike before the
    threshold crossing that caused it."""
    _check_headroom(artifact)
    F, T, d = artifact.schedule, artifact.window_steps, artifact.synaptic_delay
    batch = len(k0)
    emitted = _emission_steps(k0, F[0], T[0])
    activations, potentials = [k0], []
    for n, layer in enumerate(artifact.layers):
        fit = _Registers(artifact, layer.name)
        u = np.zeros((batch, layer.n_out), dtype=np.int64)
        v = np.zeros_like(u)
        for t in range(F[n] + d, F[n + 1]):
            a_in = exact_matmul(emitted == t - d, layer.weight, 1)
            u, v = numerics.integrate(u, v, a_in, layer.bias)
            u, v = fit(u, "current u", t), fit(v, "potential v", t)
        potentials.append(v)
        if layer.readout:
            break
        theta = fit(numerics.threshold(layer.slope, layer.window_steps), "threshold theta", F[n + 1])
        fired = np.zeros(u.shape, dtype=bool)
        spike_at = np.full(u.shape, -1, dtype=np.int64)
        for t in range(F[n + 1], F[n + 1] + layer.window_steps):
            v, spike, fired = numerics.fire_step(v, fired, layer.slope, theta)
            v = fit(v, "potential v", t)
            spike_at[spike] = t
        k = np.where(spike_at >= 0, F[n + 1] + layer.window_steps - spike_at, 0)
        if deltas is not None:
            k = numerics.jitter(k, deltas[n], layer.window_steps)
        activations.append(k)
        emitted = _emission_steps(k, F[n + 1], T[n + 1])
    return activations, potentials

"""Bit-accurate numpy emulator of an :class:`~hwtune.artifact.Artifact`, batched over samples.

Two modes that must agree exactly (tests/test_emulator.py):

- ``"fast"``: the closed form, one exact integer convolution or matmul per layer (docs/design.md,
  "Integer model"): V = q * ops(k_{n-1}) + beta T_{n-1};  k_n = numerics.fire(V, sigma, T_n).
- ``"stepped"``: the reference, step by step as in docs/design.md, "Time-stepped semantics":
  per neuron registers u, v (``membrane_bits`` signed) and a fired flag; a spike emitted at
  step t arrives at t + d; numerics.integrate in [F_{n-1} + d, F_n), numerics.fire_step in
  [F_n, F_n + T_n). Registers are checked every step; the artifact's ``overflow`` says what
  happens when one leaves its range ("error": raise, "saturate": clip, "wrap": two's complement).

Both refuse weights outside the artifact's ``weight_bits`` (what the hardware would refuse).
Fast mode's overflow proof is per layer and channel: it refuses an artifact whose worst case
(numerics.state_bound) leaves ``membrane_bits``, so no register can overflow in it.

Optional spike-time jitter: every hidden neuron draws delta = round(N(0, (jitter_sigma T_n)^2))
steps (one array (B, n) per hidden layer, in layer order, from Generator(jitter_seed)), applied to
emitted spikes with numerics.jitter; inputs are not jittered. Both modes draw the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact, membrane_violations, per_channel, weight_violations
from hwtune.backends import RunResult
from hwtune.errors import HwtuneError

MODES = ("fast", "stepped")


class EmulatorError(HwtuneError, ValueError):
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
    _refuse(weight_violations(artifact), "weights the target cannot hold: ")
    try:
        k0 = artifact.input_activations(k0)
    except ValueError as e:
        raise EmulatorError(str(e)) from None
    deltas = _jitter_draws(artifact, len(k0), jitter_seed, jitter_sigma)
    activations, potentials = (_fast if mode == "fast" else _stepped)(artifact, k0, deltas)
    return EmulatorResult(artifact=artifact, activations=activations, potentials=potentials, mode=mode,
                          jitter_sigma=float(jitter_sigma))


def run_stepped(artifact: Artifact, k0) -> EmulatorResult:
    """The ``emulator`` backend's runner (hwtune.backends): the time-stepped reference mode."""
    return emulate(artifact, k0, mode="stepped")


def _refuse(found: list[str], what: str, advice: str = "") -> None:
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise EmulatorError(f"{what}{found[0]}{more}{advice}")


def _jitter_draws(artifact: Artifact, batch: int, seed, sigma: float) -> list[np.ndarray] | None:
    """delta (B, n_n) in steps for each hidden layer, or None without jitter."""
    if sigma == 0:
        return None
    rng = np.random.default_rng(seed)
    return [np.round(rng.normal(0.0, sigma * layer.window_steps, size=(batch, layer.n_out))).astype(np.int64)
            for layer in artifact.hidden]


def _fast(artifact: Artifact, k0: np.ndarray, deltas):
    """Closed form, layer by layer: V = q * ops(k) + beta T_{n-1} (exact), k = numerics.fire(V, sigma, T_n)."""
    _refuse(membrane_violations(artifact), "fast mode needs an artifact whose registers cannot overflow, but ",
            "; use mode='stepped', which checks every step")
    steps = artifact.window_steps
    batch = len(k0)
    k, activations, potentials = k0, [k0], []
    for n, layer in enumerate(artifact.layers):
        V = layer.potential(k, steps[n])
        potentials.append(V.reshape(batch, -1))
        if layer.readout:
            break
        k = numerics.fire(V, _slope(layer.slope, V.ndim), layer.window_steps).reshape(batch, -1)
        if deltas is not None:
            k = numerics.jitter(k, deltas[n], layer.window_steps)
        activations.append(k)
    return activations, potentials


def _slope(slope: np.ndarray, ndim: int):
    """sigma as an int when all channels share it (one slope per layer: numpy divides by a scalar
    about 10x faster than by a per-element divisor), else shaped per channel."""
    return int(slope[0]) if (slope == slope[0]).all() else per_channel(slope, ndim)


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
        worst = layer.abs_sums().astype(np.float64) + np.abs(layer.bias)
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
        beta = per_channel(layer.bias, len(layer.out_shape) + 1)
        u = np.zeros((batch, *layer.out_shape), dtype=np.int64)
        v = np.zeros_like(u)
        for t in range(F[n] + d, F[n + 1]):
            a_in = layer.potential((emitted == t - d).astype(np.int64), 0, k_max=1)   # sum of q of arrivals
            u, v = numerics.integrate(u, v, a_in, beta)
            u, v = fit(u.reshape(batch, -1), "current u", t).reshape(u.shape), \
                fit(v.reshape(batch, -1), "potential v", t).reshape(v.shape)
        potentials.append(v.reshape(batch, -1))
        if layer.readout:
            break
        sigma = np.broadcast_to(per_channel(layer.slope, u.ndim), u.shape).reshape(batch, -1)
        theta = fit(numerics.threshold(sigma, layer.window_steps), "threshold theta", F[n + 1])
        v = v.reshape(batch, -1)
        fired = np.zeros(v.shape, dtype=bool)
        spike_at = np.full(v.shape, -1, dtype=np.int64)
        for t in range(F[n + 1], F[n + 1] + layer.window_steps):
            v, spike, fired = numerics.fire_step(v, fired, sigma, theta)
            v = fit(v, "potential v", t)
            spike_at[spike] = t
        k = np.where(spike_at >= 0, F[n + 1] + layer.window_steps - spike_at, 0)
        if deltas is not None:
            k = numerics.jitter(k, deltas[n], layer.window_steps)
        activations.append(k)
        emitted = _emission_steps(k, F[n + 1], T[n + 1])
    return activations, potentials

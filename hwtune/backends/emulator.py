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

Optional device noise (:class:`EmulatorNoise`, hwtune.device_noise): a device instance's mismatched
weights (one per physical synapse: a convolution's kernel becomes one per output position) and
threshold offsets, and each batch's trial draws (threshold noise, jitter, deletion), applied by
the rules of hwtune.numerics in the order threshold offset -> fire -> jitter -> deletion. Both modes
apply the same draws; the torch model fed the same device and trial generator computes the same
integers (tests/test_noise.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwtune import numerics
from hwtune.artifact import Artifact, membrane_violations, per_channel, weight_violations
from hwtune.backends import RunResult
from hwtune.errors import HwtuneError
from hwtune.layers import engine
from hwtune.device_noise import EVAL, Device, NoiseSpec, Trial, rng

MODES = ("fast", "stepped")


class EmulatorError(HwtuneError, ValueError):
    """Bad input to the emulator, or an artifact the requested mode cannot run."""


class MembraneOverflowError(EmulatorError):
    """A u, v or theta register left ``membrane_bits`` with ``overflow="error"``."""


@dataclass
class EmulatorResult(RunResult):
    """A :class:`RunResult` plus the emulator mode and noise that produced it."""

    mode: str = "fast"
    noise: dict | None = None


@dataclass
class EmulatorNoise:
    """Device noise for the emulator: the levels, a device instance (fixed pattern, or None) and the
    generator of the trial draws, consumed batch by batch (:meth:`draws`)."""

    spec: NoiseSpec
    device: Device | None
    trial_rng: np.random.Generator

    @classmethod
    def evaluation(cls, artifact: Artifact, spec: NoiseSpec, seed: int, index: int) -> "EmulatorNoise":
        """Held-out device ``index`` of stream EVAL, as the torch model's evaluation draws it
        (hwtune.passes.noise.evaluation_noise)."""
        geometry = [layer.geometry() for layer in artifact.layers]
        device = Device.draw(spec, geometry, rng(EVAL, seed, 2 * index)) if spec.fixed_pattern else None
        return cls(spec, device, rng(EVAL, seed, 2 * index + 1))

    def draws(self, artifact: Artifact, batch: int) -> "_Draws":
        """This batch's noise: mismatched weights, threshold offsets, jitter, deletion, per layer."""
        geometry = [layer.geometry() for layer in artifact.layers]
        trial = Trial.draw(self.spec, geometry, batch, self.trial_rng) if self.spec.trial_to_trial else None
        return _Draws(artifact, self.spec, self.device, trial)


class _Draws:
    """The integer noise of one batch, layer by layer (numerics rules, the torch model's order)."""

    def __init__(self, artifact: Artifact, spec: NoiseSpec, device: Device | None, trial: Trial | None):
        self.artifact, self.spec, self.device, self.trial = artifact, spec, device, trial

    def weights(self, n: int) -> list | None:
        """The device's weights of each leaf synapse of layer n (None without weight mismatch)."""
        if self.device is None or self.device.weight_eps[n] is None:
            return None
        lo, hi = numerics.signed_range(self.artifact.weight_bits)
        return [numerics.mismatch(leaf.weight.reshape(leaf.weight.shape + (1,) * (eps.ndim - leaf.weight.ndim)), eps,
                                  self.spec.weight_mismatch, lo, hi).astype(np.int64)
                for leaf, eps in zip(self.artifact.layers[n].leaves(), self.device.weight_eps[n])]

    def threshold_offset(self, n: int, V: np.ndarray, slope: np.ndarray, steps: int) -> np.ndarray | None:
        shift = None
        if self.device is not None and self.device.threshold_eps[n] is not None:
            shift = self.spec.threshold_mismatch * self.device.threshold_eps[n][None]
        if self.trial is not None and self.trial.threshold_eps[n] is not None:
            noise = self.spec.threshold_noise * self.trial.threshold_eps[n]
            shift = noise if shift is None else shift + noise
        if shift is None:
            return None
        return numerics.threshold_offset(shift.reshape(len(shift), *V.shape[1:]), steps,
                                         per_channel(slope, V.ndim)).astype(np.int64)

    def spikes(self, n: int, k: np.ndarray, steps: int) -> np.ndarray:
        """Jitter, then deletion, of the activations k (B, neurons) of hidden layer n."""
        if self.trial is None:
            return k
        if self.trial.jitter_eps[n] is not None:
            k = numerics.jitter(k, numerics.jitter_steps(self.trial.jitter_eps[n], self.spec.jitter, steps), steps)
        if self.trial.deletion_u[n] is not None:
            k = numerics.delete(k, self.trial.deletion_u[n], self.spec.spike_deletion)
        return k.astype(np.int64)


def emulate(artifact: Artifact, k0, mode: str = "fast", noise: EmulatorNoise | None = None) -> EmulatorResult:
    """Run ``artifact`` on input activations ``k0`` (B, n_in), integers in [0, T_0].

    k0 comes from numerics.encode_input. Returns activations, spike steps, potentials and the
    read-out logits (integers: int32 in fast mode where the registers fit, else int64).
    ``mode="fast"`` refuses an artifact whose registers could overflow (see
    hwtune.artifact.membrane_violations; with device noise, the device's weights and offsets are
    bounded); ``mode="stepped"`` checks every step instead. ``noise``: device noise, whose
    trial generator this batch advances.
    """
    if mode not in MODES:
        raise EmulatorError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "fast":
        return FastEmulator(artifact)(k0, noise)
    _refuse(weight_violations(artifact), "weights the target cannot hold: ")
    k0, draws = _inputs(artifact, k0, noise)
    activations, potentials = _stepped(artifact, k0, draws)
    return _result(artifact, activations, potentials, "stepped", noise)


def emulate_in_batches(artifact: Artifact, k0, batch_size: int, mode: str = "fast") -> EmulatorResult:
    """:func:`emulate` of ``k0`` (B, n_in) run ``batch_size`` samples at a time (the fast mode prepared
    once: :class:`FastEmulator`), each layer's activations and potentials concatenated: the same
    result, with one batch's working memory (float potentials, im2col) instead of all B samples'."""
    if mode not in MODES:
        raise EmulatorError(f"mode must be one of {MODES}, got {mode!r}")
    run = FastEmulator(artifact) if mode == "fast" else (lambda k: emulate(artifact, k, mode=mode))
    parts = [run(k0[i:i + batch_size]) for i in range(0, max(len(k0), 1), batch_size)]
    if len(parts) == 1:
        return parts[0]
    return EmulatorResult(artifact=artifact, mode=mode,
                          activations=[np.concatenate(layer) for layer in zip(*(p.activations for p in parts))],
                          potentials=[np.concatenate(layer) for layer in zip(*(p.potentials for p in parts))])


def _inputs(artifact: Artifact, k0, noise: EmulatorNoise | None) -> tuple[np.ndarray, "_Draws | None"]:
    """The checked input activations (int64 (B, n_in)) and this batch's noise draws (or None)."""
    try:
        k0 = artifact.input_activations(k0)
    except ValueError as e:
        raise EmulatorError(str(e)) from None
    return k0, noise.draws(artifact, len(k0)) if noise is not None else None


def _result(artifact: Artifact, activations, potentials, mode: str, noise: EmulatorNoise | None) -> EmulatorResult:
    return EmulatorResult(artifact=artifact, activations=activations, potentials=potentials, mode=mode,
                          noise=None if noise is None else noise.spec.to_dict())


def run_stepped(artifact: Artifact, k0) -> EmulatorResult:
    """The ``emulator`` backend's runner (hwtune.backends): the time-stepped reference mode."""
    return emulate(artifact, k0, mode="stepped")


def _refuse(found: list[str], what: str, advice: str = "") -> None:
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise EmulatorError(f"{what}{found[0]}{more}{advice}")


class FastEmulator:
    """The fast mode of :func:`emulate` for one artifact, prepared once and run batch after batch
    (``FastEmulator(artifact)(k0)`` is ``emulate(artifact, k0)``): the checks (weights within
    ``weight_bits``, the overflow proof), each layer's exact type, offset and slopes, and its weights
    converted or prepacked for the kernels of the engine active now (hwtune.layers.engine; int8 chosen
    from the bound k <= T of the windows, not a scan), which every call runs on. Streaming callers
    build one per run.

    Closed form, layer by layer in the graph's order: V = stage(k of its inputs) + beta T (exact),
    k = numerics.fire(V, sigma, T_n). V and k stay in V's exact type (float32 for Loihi-sized
    registers, ArtifactLayer.potential) from layer to layer; the returned activations and potentials
    are integers (:func:`_result_type`). A device's mismatched weights (device noise) are new every
    batch: those layers are prepared per batch."""

    def __init__(self, artifact: Artifact):
        _refuse(weight_violations(artifact), "weights the target cannot hold: ")
        _refuse(membrane_violations(artifact), "fast mode needs an artifact whose registers cannot overflow, but ",
                "; use mode='stepped', which checks every step")
        self.artifact, timing = artifact, artifact.timing
        self.engine, self.integers = engine.active(), _result_type(artifact)
        self.potentials = [layer.prepare_potential(timing.steps_in(n)) for n, layer in enumerate(artifact.layers)]
        self.slopes = [None if layer.readout else _slope(layer.slope, len(layer.out_shape) + 1)
                       for layer in artifact.layers]

    def __call__(self, k0, noise: EmulatorNoise | None = None) -> EmulatorResult:
        """:func:`emulate` (artifact, k0, "fast", noise)."""
        with engine.forced(self.engine):
            return self._run(*_inputs(self.artifact, k0, noise), noise)

    def _run(self, k0: np.ndarray, draws: _Draws | None, noise: EmulatorNoise | None) -> EmulatorResult:
        artifact, timing = self.artifact, self.artifact.timing
        batch = len(k0)
        exact, activations, potentials = [k0], [k0], []      # exact: every node's activations in V's type
        for n, (layer, sources) in enumerate(zip(artifact.layers, timing.sources)):
            ks = [exact[p] for p in sources]
            weights = draws.weights(n) if draws is not None else None
            if weights is None:
                V = self.potentials[n](ks)
            else:
                V = layer.potential(ks, timing.steps_in(n), weights=weights, exact_float=True)
            potentials.append(V.reshape(batch, -1).astype(self.integers))
            if layer.readout:
                break
            offset = draws.threshold_offset(n, V, layer.slope, layer.window_steps) if draws is not None else None
            if weights is not None or offset is not None:
                _check_noisy_registers(artifact, layer, V, offset)
            fired = V if offset is None else V - offset
            k = numerics.fire(fired, self.slopes[n], layer.window_steps).reshape(batch, -1)
            if draws is not None:
                k = draws.spikes(n, k, layer.window_steps)
            exact.append(k)
            activations.append(k.astype(self.integers))
        return _result(artifact, activations, potentials, "fast", noise)


def _result_type(artifact: Artifact):
    """int32 when every register fits it (membrane_bits <= 32, and so does every k <= T: the fast
    mode's overflow proof), else int64: half the bytes to write for Loihi-sized nets."""
    return np.int32 if artifact.membrane_bits <= 32 and max(artifact.window_steps) < 2 ** 31 else np.int64


def _check_noisy_registers(artifact: Artifact, layer, V: np.ndarray, offset) -> None:
    """With device noise the static proof does not cover the device's weights and offsets: the
    final potentials and offset thresholds of this batch must fit ``membrane_bits``."""
    lo, hi = numerics.signed_range(artifact.membrane_bits)
    theta = numerics.threshold(per_channel(layer.slope, V.ndim), layer.window_steps)
    worst = int(max(np.abs(V).max(initial=0), (np.abs(theta + (0 if offset is None else offset))).max(initial=0)))
    if worst > hi:
        raise MembraneOverflowError(f"layer {layer.name!r}: with device noise a register reaches {worst}, beyond the "
                                    f"{artifact.membrane_bits}-bit signed range [{lo}, {hi}]")


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
            return numerics.saturate(x, self.bits)
        if self.mode == "wrap":
            return numerics.wrap(x, self.bits)
        bad = (x < self.lo) | (x > self.hi)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            sample = f" of sample {where[0]}" if x.ndim == 2 else ""
            raise MembraneOverflowError(
                f"layer {self.name!r} neuron {where[-1]}{sample}: {what} = {x[where]} at step {step} leaves the "
                f"{self.bits}-bit signed range [{self.lo}, {self.hi}]")
        return x


#: The stepped mode keeps registers and per-step inputs below 2^this, so int64 sums never wrap.
_STEPPED_HEADROOM_BITS = 60


def _check_headroom(artifact: Artifact) -> None:
    """Refuse what the int64 stepped mode cannot emulate exactly (far beyond any real chip)."""
    if artifact.membrane_bits > _STEPPED_HEADROOM_BITS:
        raise EmulatorError(f"stepped mode emulates registers of at most {_STEPPED_HEADROOM_BITS} bits in int64, "
                            f"got membrane_bits={artifact.membrane_bits}")
    for layer in artifact.layers:
        worst = layer.abs_sums().astype(np.float64) + np.abs(layer.bias)
        if layer.slope is not None:
            worst = np.maximum(worst, layer.slope * (layer.window_steps + 1.0))
        if worst.max(initial=0) >= 2 ** _STEPPED_HEADROOM_BITS:
            raise EmulatorError(f"layer {layer.name!r}: weights, bias or threshold reach 2^60 per step; "
                                "the int64 stepped mode cannot emulate them exactly")


def _stepped(artifact: Artifact, k0: np.ndarray, draws: _Draws | None):
    """Time-stepped reference, layer after layer in the graph's order: a layer's neurons advance one
    global step at a time through their integration and firing windows, fed by the spikes of each of
    its inputs d + D steps after emission (numerics.Timing: D aligns the inputs, so a spike of
    activation k arrives k steps before the firing start). The net is feed-forward and each layer only
    listens during its own window, so this equals advancing all layers together; it also lets jitter
    move a spike before the threshold crossing that caused it. Device noise: mismatched weights in the
    synaptic input, threshold offsets added to theta, jitter and deletion applied to the emitted spikes."""
    _check_headroom(artifact)
    timing, d = artifact.timing, artifact.synaptic_delay
    F, T = timing.starts, timing.window_steps
    batch = len(k0)
    emitted = [numerics.emission_step(k0, F[0], T[0])]            # every node's spike step (-1: silent)
    activations, potentials = [k0], []
    for n, (layer, sources) in enumerate(zip(artifact.layers, timing.sources)):
        fit = _Registers(artifact, layer.name)
        beta = per_channel(layer.bias, len(layer.out_shape) + 1)
        u = np.zeros((batch, *layer.out_shape), dtype=np.int64)
        v = np.zeros_like(u)
        weights = draws.weights(n) if draws is not None else None
        lags = [d + timing.arrival_delay(n, p) for p in sources]
        for t in timing.integration(n):
            arrivals = [((emitted[p] == t - lag) & (emitted[p] >= 0)).astype(np.int64) for p, lag in zip(sources, lags)]
            a_in = layer.potential(arrivals, 0, k_max=1, weights=weights)             # sum q of the arrivals
            u, v = numerics.integrate(u, v, a_in, beta)
            u, v = fit(u.reshape(batch, -1), "current u", t).reshape(u.shape), \
                fit(v.reshape(batch, -1), "potential v", t).reshape(v.shape)
        potentials.append(v.reshape(batch, -1))
        if layer.readout:
            break
        start = F[n + 1]
        sigma = np.broadcast_to(per_channel(layer.slope, u.ndim), u.shape).reshape(batch, -1)
        theta = numerics.threshold(sigma, layer.window_steps)
        offset = draws.threshold_offset(n, v, layer.slope, layer.window_steps) if draws is not None else None
        if offset is not None:
            theta = theta + offset.reshape(batch, -1)
        theta = fit(theta, "threshold theta", start)
        v = v.reshape(batch, -1)
        fired = np.zeros(v.shape, dtype=bool)
        spike_at = np.full(v.shape, -1, dtype=np.int64)
        for t in range(start, start + layer.window_steps):
            v, spike, fired = numerics.fire_step(v, fired, sigma, theta)
            v = fit(v, "potential v", t)
            spike_at[spike] = t
        k = np.where(spike_at >= 0, numerics.step_of(spike_at - start, layer.window_steps), 0)
        if draws is not None:
            k = draws.spikes(n, k, layer.window_steps)
        activations.append(k)
        emitted.append(numerics.emission_step(k, start, layer.window_steps))
    return activations, potentials

"""TTFSNet: a B1 time-to-first-spike network, float (closed form) or quantized (integer-exact).

Float mode follows docs/design.md "Float TTFS model": input window [0, 1], hidden windows
of L_n tau_c chained, read-out = membrane at the start of its window. Quantized mode
(``net.quant`` set) computes exactly the integers of docs/design.md "Integer model" in
float64 tensors, with straight-through gradients equal to the float model's.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn

from hwtune import numerics
from hwtune.architectures import canonical_arch, output_shapes
from hwtune.layers import exact_dtype, is_weighted, kind_of
from hwtune.ttfs.arch import glorot_init, make_synapse
from hwtune.ttfs.functional import activation, silent_to_inf, spike_time, straight_through
from hwtune.device_noise import Geometry
from hwtune.ttfs.noise_state import NoiseState
from hwtune.ttfs.quant import QuantSpec, float_synapse, quant_synapse, scale_per_neuron, weight_mantissa

#: Hidden window L_n (tau_c) of a net trained from scratch: 1.5 x 1000 (reference code).
DEFAULT_WINDOW = 1500.0


def _exact_float(q: torch.Tensor, k_max: float) -> torch.dtype:
    """float32 when hwtune.layers.exact_dtype finds every partial sum of q * k (|k| <= k_max) exact
    in it, float64 otherwise. q: (out, ...), or unshared (C_out, C_in, K, K, H_o, W_o)."""
    q = q.detach().abs()
    per_output = q.reshape(len(q), -1, q.shape[4] * q.shape[5]) if q.ndim == 6 else q.reshape(len(q), -1, 1)
    bound = float(per_output.sum(dim=1).max()) * k_max
    return torch.float32 if exact_dtype(bound) is np.float32 else torch.float64


def _per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a per-output-channel vector over (B, C) or (B, C, H, W)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class TTFSNet(nn.Module):
    """Spiking TTFS network returning logits; see the module docstring for the two modes."""

    #: What :meth:`conditions` sets for a block: device noise, the time grid, saturation of early
    #: spikes, and recording each batch's largest activation (``batch_max``, for grow_windows).
    CONDITIONS = ("noise", "quant", "saturate", "track_windows")

    def __init__(self, arch: list[dict], input_shape: tuple[int, ...], windows=None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.arch = canonical_arch(arch)
        self.input_shape = tuple(input_shape)
        self.synapses = nn.ModuleList(make_synapse(layer).to(dtype) for layer in self.arch if is_weighted(layer))
        glorot_init(self.synapses)
        n_hidden = len(self.synapses) - 1
        if windows is None:
            windows = [DEFAULT_WINDOW] * n_hidden
        self.register_buffer("windows", torch.as_tensor(windows, dtype=torch.float64).reshape(n_hidden).clone())
        self.saturate = False
        self.quant: QuantSpec | None = None
        self.noise: NoiseState | None = None
        self.track_windows = False
        self.batch_max: list[float] = []
        self.info: dict = {}  # dataset, target, history of passes, provenance (see hwtune.io)
        self._segments = self._split_segments()

    @contextlib.contextmanager
    def conditions(self, **changes):
        """The forward's conditions (``noise``, ``quant``, ``saturate``, ``track_windows``) set for the
        block and put back after it, also on error: e.g. ``with net.conditions(noise=state): evaluate(net, x, y)``."""
        unknown = set(changes) - set(self.CONDITIONS)
        if unknown:
            raise TypeError(f"conditions: unknown {sorted(unknown)}; the forward's conditions are "
                            f"{', '.join(self.CONDITIONS)}")
        saved = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    # ------------------------------------------------------------------ structure
    def _split_segments(self) -> list[tuple[tuple, dict]]:
        """Arch cut after each weighted layer: segment n = (shape ops before synapse n, as
        hwtune.layers instances; the architecture dict of synapse n)."""
        segments, ops = [], []
        for layer in self.arch:
            if is_weighted(layer):
                segments.append((tuple(ops), layer))
                ops = []
            else:
                ops.append(kind_of(layer).from_spec(layer))
        return segments

    def segment(self, n: int) -> tuple[tuple, dict]:
        """(shape ops, synapse dict) of synapse n: what the export turns into artifact layer n."""
        return self._segments[n]

    @property
    def n_hidden(self) -> int:
        return len(self.synapses) - 1

    def geometry(self) -> list[Geometry]:
        """Per synapse: its weight shape, unshared over the output positions for a convolution
        (C_out, C_in, K, K, H_o, W_o), its neurons, whether it is hidden (hwtune.device_noise draws)."""
        shapes = output_shapes(self.arch, self.input_shape)
        out = [shape for layer, shape in zip(self.arch, shapes) if is_weighted(layer)]
        return [Geometry(weight_shape=tuple(syn.weight.shape) + tuple(shape[1:]), neurons=math.prod(shape),
                         hidden=n < self.n_hidden) for n, (syn, shape) in enumerate(zip(self.synapses, out))]

    @property
    def dtype(self) -> torch.dtype:
        return self.synapses[0].weight.dtype

    def window_bounds(self) -> list[tuple[float, float]]:
        """[(t_min_n, t_max_n)] of the hidden layers in tau_c; the read-out starts at the last t_max."""
        bounds, t = [], 1.0
        for length in self.windows.tolist():
            bounds.append((t, t + length))
            t += length
        return bounds

    def latency(self) -> float:
        """Classification latency: 1 (input window) + sum of hidden windows, in tau_c."""
        return 1.0 + float(self.windows.sum())

    def latency_steps(self) -> int:
        """Latency of the quantized net in time steps: sum_n (T_n + d) (see numerics.schedule)."""
        if self.quant is None:
            raise ValueError("latency in steps needs a time grid: quantize the net first")
        return numerics.schedule(self.quant.steps, self.quant.delay)[-1]

    def set_quant(self, spec: QuantSpec | None) -> None:
        """Put the net on an integer time grid (and integer weights), or back to float."""
        if spec is not None and len(spec.steps) != self.n_hidden + 1:
            raise ValueError(f"time grid needs {self.n_hidden + 1} window lengths (input + hidden), got {spec.steps}")
        n_last = len(self.synapses) - 1
        for i, syn in enumerate(self.synapses):
            layer = self._segments[i][1]
            if spec is not None and spec.weights is not None:
                self.synapses[i] = quant_synapse(layer, syn, spec.weights, readout=i == n_last)
            elif hasattr(syn, "quant_weight"):
                self.synapses[i] = float_synapse(layer, syn)
        self.quant = spec

    # ------------------------------------------------------------------ forward
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Logits for pixel intensities u in [0, 1], shape (B, *input_shape)."""
        return self._run(u, None)

    def spike_times(self, u: torch.Tensor) -> list[torch.Tensor]:
        """Spike times (tau_c) of the input and every hidden layer; +inf for silent neurons."""
        times: list[torch.Tensor] = []
        with torch.no_grad():
            self._run(u, times)
        return times

    def activations(self, u: torch.Tensor) -> list[torch.Tensor]:
        """Activations x = t_max - t of the input and hidden layers (0 when silent); integers k when quantized."""
        return self.forward_with_activations(u)[1]

    def forward_with_activations(self, u: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, activations) of one pass, so that both see the same noise draw."""
        acts: list[torch.Tensor] = []
        with torch.no_grad():
            logits = self._run(u, None, acts)
        return logits, acts

    def _run(self, u, times, acts=None):
        u = u.to(self.dtype)
        if self.noise is not None:
            self.noise.begin(len(u))
        if self.quant is None:
            return self._forward_float(u, times, acts)
        return self._forward_quantized(u, times, acts)

    def _linear(self, n: int, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        """Synapse n on x with ``weight`` (its kind's torch_apply: a device instance's mismatch
        may give a convolution one kernel per output position)."""
        return kind_of(self._segments[n][1]).torch_apply(self.synapses[n], x, weight, bias)

    @staticmethod
    def _neurons(draw: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-neuron draw (B or 1, neurons) shaped like the layer's (B, C[, H, W]) tensor."""
        return draw.reshape(len(draw), *like.shape[1:]).to(like.dtype)

    def _forward_float(self, u, times, acts):
        t = 1.0 - u  # input spike times; u = 0 -> t = 1 = t_max of the input window (silent)
        t_ref = 1.0
        if times is not None:
            times.append(silent_to_inf(t, 1.0))
        if acts is not None:
            acts.append(u)
        self.batch_max = []
        bounds = self.window_bounds()
        for n, (ops, _) in enumerate(self._segments):
            for op in ops:
                t = op.torch_apply(t, on_times=True)
            syn = self.synapses[n]
            weight = syn.weight
            factor = self.noise.weight_factor(n, weight) if self.noise is not None else None
            if factor is not None:
                weight = weight.reshape(weight.shape + (1,) * (factor.ndim - weight.ndim)) * factor.to(weight.dtype)
            z = self._linear(n, activation(t, t_ref), weight, syn.bias)
            if n == self.n_hidden:
                return z
            t_min, t_max = bounds[n]
            shift = self.noise.threshold_shift(n, z) if self.noise is not None else None
            if shift is not None:
                z = z - self._neurons(shift, z) * (t_max - t_min)
            t = spike_time(z, t_min, t_max, self.saturate)
            t = self._float_spike_noise(n, t, t_min, t_max)
            if self.track_windows:
                self.batch_max.append(float(t_max - t.detach().min()))
            if times is not None:
                times.append(silent_to_inf(t, t_max))
            if acts is not None:
                acts.append(activation(t, t_max))
            t_ref = t_max
        raise AssertionError("unreachable: the last segment is the read-out")

    def _float_spike_noise(self, n: int, t: torch.Tensor, t_min: float, t_max: float) -> torch.Tensor:
        """Jitter (each spike moves by level L eps, clipped to the window) and deletion of spikes."""
        if self.noise is None:
            return t
        eps, u = self.noise.jitter_eps(n, t), self.noise.deletion_u(n, t)
        if eps is not None:
            t = torch.clamp(t + self._neurons(eps, t) * (self.noise.spec.jitter * (t_max - t_min)) * (t < t_max),
                            t_min, t_max)
        if u is not None:
            t = torch.where(self._neurons(u, t) < self.noise.spec.spike_deletion, torch.full_like(t, t_max), t)
        return t

    # ------------------------------------------------------------------ integer-exact forward
    def _steps_and_windows(self, n: int) -> tuple[int, float, float]:
        """(T_{n-1}, L_{n-1}, Delta_{n-1}) of synapse n's input window (tau_c; the input window is 1)."""
        steps_in = self.quant.steps[n]
        window_in = 1.0 if n == 0 else float(self.windows[n - 1])
        return steps_in, window_in, window_in / steps_in

    def _slope(self, n: int, unit: torch.Tensor):
        """sigma per channel of hidden synapse n (None for the read-out): Delta_n / unit, rounded
        to a positive integer when the weights are integer (numerics.slope)."""
        if n == self.n_hidden:
            return None
        delta_out = float(self.windows[n]) / self.quant.steps[n + 1]
        if self.quant.weights is None:
            return delta_out / unit
        _, _, delta_in = self._steps_and_windows(n)
        sigma = numerics.slope(delta_out, (unit / delta_in).detach().cpu().numpy(), delta_in)
        return torch.as_tensor(sigma, dtype=torch.float64, device=unit.device)

    def integer_parameters(self, n: int, gain: float):
        """(q, beta, sigma, unit) of synapse n of a net with integer weights, ``gain`` = 1 / area
        of the sum pooling before it: q the weight mantissas (float64, straight-through gradient),
        beta the per-step bias mantissa per output channel (numerics.bias_mantissa), sigma the
        firing slope per channel (None for the read-out) and unit the float value of one potential
        unit per channel (s gain Delta_{n-1}). The export reads the same numbers (hwtune.exporter)."""
        spec, syn = self.quant, self.synapses[n]
        _, window_in, delta_in = self._steps_and_windows(n)
        q, scale = weight_mantissa(syn)
        s = scale_per_neuron(scale, syn.weight.shape[0]).double() * gain
        unit = s * delta_in
        b = syn.bias.double()
        beta = straight_through(numerics.bias_mantissa(b.detach(), s, window_in, spec.weights.bias_bits),
                                b / (s * window_in))
        return q.double(), beta, self._slope(n, unit), unit

    def integer_synapse(self, n: int, k_in: torch.Tensor, gain: float):
        """Membrane V of synapse n for integer input activations (sum-pooled, ``gain`` = 1/pool area).

        Returns (V, unit, sigma): V in potential units (float64, integer-valued when the
        weights are quantized), unit = float value of one potential unit per channel
        (s gain Delta_{n-1}), sigma = firing slope per channel (None for the read-out).
        """
        spec, syn = self.quant, self.synapses[n]
        steps_in, _, delta_in = self._steps_and_windows(n)
        factor = self.noise.weight_factor(n, syn.weight) if self.noise is not None else None
        if spec.weights is None:
            weight = syn.weight.double()
            if factor is not None:
                weight = weight.reshape(weight.shape + (1,) * (factor.ndim - weight.ndim)) * factor
            unit = torch.full((syn.weight.shape[0],), gain * delta_in, dtype=torch.float64, device=weight.device)
            V = self._linear(n, k_in, weight, None) + _per_channel(syn.bias.double() / unit, k_in.ndim)
            return V, unit, self._slope(n, unit)
        q, beta, sigma, unit = self.integer_parameters(n, gain)
        if factor is not None:   # a device instance: q' = clip(round(q (1 + m eps)), range), per physical synapse
            q = q.reshape(q.shape + (1,) * (factor.ndim - q.ndim))
            eps = self.noise.device.weight_eps[n]
            q = straight_through(numerics.mismatch(q.detach(), torch.as_tensor(eps, device=q.device),
                                                   self.noise.spec.weight_mismatch, spec.weights.qmin,
                                                   spec.weights.qmax), q * factor)
        dtype = _exact_float(q, steps_in / gain)
        V = self._linear(n, k_in.to(dtype), q.to(dtype), None).double() + _per_channel(beta * steps_in, k_in.ndim)
        return V, unit, sigma

    def segment_gain(self, n: int) -> float:
        """1 / (area of the average pooling between synapse n and the previous spiking layer)."""
        return 1.0 / math.prod(op.gain for op in self._segments[n][0])

    def segment_potential(self, n: int, k: torch.Tensor):
        """(V, unit, sigma) of synapse n from the previous spiking layer's integer activations k.

        Pooling between them is sum pooling of k, its 1/area folded into the weight scale (gain).
        """
        for op in self._segments[n][0]:
            k = op.torch_apply(k, on_times=False)
        return self.integer_synapse(n, k, self.segment_gain(n))

    def _forward_quantized(self, u, times, acts):
        spec = self.quant
        k = numerics.encode_input(u, spec.steps[0])
        if times is not None:
            times.append(silent_to_inf(numerics.spike_step(k, spec.steps[0]) / spec.steps[0], 1.0))
        if acts is not None:
            acts.append(k)
        bounds = self.window_bounds()
        for n in range(len(self._segments)):
            V, unit, sigma = self.segment_potential(n, k)
            if n == self.n_hidden:
                return (V * _per_channel(unit, V.ndim)).to(self.dtype)
            T = spec.steps[n + 1]
            sig = _per_channel(sigma, V.ndim)
            shift = self.noise.threshold_shift(n, V) if self.noise is not None else None
            if shift is not None:
                V = V - numerics.threshold_offset(self._neurons(shift, V), T, sig)
            k = straight_through(numerics.fire(V.detach(), sig, T), (V / sig).clamp(0, T))
            k = self._integer_spike_noise(n, k, T)
            if times is not None:
                t_min, t_max = bounds[n]
                times.append(t_min + numerics.spike_step(k.detach(), T) * (t_max - t_min) / T)
            if acts is not None:
                acts.append(k.detach())
        raise AssertionError("unreachable: the last segment is the read-out")

    def _integer_spike_noise(self, n: int, k: torch.Tensor, T: int) -> torch.Tensor:
        """Jitter by whole steps (numerics.jitter_steps, numerics.jitter) and spike deletion
        (numerics.delete) of integer activations k, straight-through."""
        if self.noise is None:
            return k
        eps, u = self.noise.jitter_eps(n, k), self.noise.deletion_u(n, k)
        noisy = k.detach()
        if eps is not None:
            noisy = numerics.jitter(noisy, numerics.jitter_steps(self._neurons(eps, k), self.noise.spec.jitter, T), T)
        if u is not None:
            noisy = numerics.delete(noisy, self._neurons(u, k), self.noise.spec.spike_deletion)
        return k if noisy is k.detach() else straight_through(noisy, k)

    # ------------------------------------------------------------------ windows
    def grow_windows(self, factor: float = 10.0) -> None:
        """Adaptive window rule (reference code): L_n <- max(L_n, factor x largest batch activation).

        Uses the activations recorded by the last forward pass (``track_windows``); grow-only.
        """
        for n, batch_max in enumerate(self.batch_max):
            if factor * batch_max > float(self.windows[n]):
                self.windows[n] = factor * batch_max

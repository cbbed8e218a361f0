"""TTFSNet: a B1 time-to-first-spike network, float (closed form) or quantized (integer-exact).

Float mode follows docs/design.md "Float TTFS model": input window [0, 1], hidden windows
of L_n tau_c chained, read-out = membrane at the start of its window. Quantized mode
(``net.quant`` set) computes exactly the integers of docs/design.md "Integer model" in
float64 tensors, with straight-through gradients equal to the float model's.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwtune import numerics
from hwtune.architectures import WEIGHTED, validate
from hwtune.ttfs.arch import glorot_init, make_synapse
from hwtune.ttfs.functional import activation, silent_to_inf, spike_time, straight_through
from hwtune.ttfs.noise import NoiseModel
from hwtune.ttfs.quant import QuantSpec, float_synapse, quant_synapse, scale_per_neuron, weight_mantissa

#: Hidden window L_n (tau_c) of a net trained from scratch: 1.5 x 1000 (reference code).
DEFAULT_WINDOW = 1500.0


def _exact_float(q: torch.Tensor, k_max: float) -> torch.dtype:
    """float32 when every partial sum of q * k (|k| <= k_max) is an integer below 2^24, so that the
    convolution is exact in float32 (hwtune.layers.exact_dtype); float64 otherwise."""
    bound = float(q.detach().abs().reshape(len(q), -1).sum(dim=1).max()) * k_max
    return torch.float32 if bound <= 2 ** 24 else torch.float64


def _per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a per-output-channel vector over (B, C) or (B, C, H, W)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class TTFSNet(nn.Module):
    """Spiking TTFS network returning logits; see the module docstring for the two modes."""

    def __init__(self, arch: list[dict], input_shape: tuple[int, ...], windows=None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        validate(arch)
        self.arch = [dict(layer) for layer in arch]
        self.input_shape = tuple(input_shape)
        self.synapses = nn.ModuleList(make_synapse(layer).to(dtype) for layer in arch if layer["kind"] in WEIGHTED)
        glorot_init(self.synapses)
        n_hidden = len(self.synapses) - 1
        if windows is None:
            windows = [DEFAULT_WINDOW] * n_hidden
        self.register_buffer("windows", torch.as_tensor(windows, dtype=torch.float64).reshape(n_hidden).clone())
        self.saturate = False
        self.quant: QuantSpec | None = None
        self.noise: NoiseModel | None = None
        self.track_windows = False
        self.batch_max: list[float] = []
        self.info: dict = {}  # dataset, target, history of passes, provenance (see hwtune.io)
        self._segments = self._split_segments()

    # ------------------------------------------------------------------ structure
    def _split_segments(self) -> list[list[dict]]:
        """Arch cut after each weighted layer: segment n = [pool/flatten ops..., synapse n]."""
        segments, current = [], []
        for layer in self.arch:
            current.append(layer)
            if layer["kind"] in WEIGHTED:
                segments.append(current)
                current = []
        return segments

    @property
    def n_hidden(self) -> int:
        return len(self.synapses) - 1

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
            if spec is not None and spec.weights is not None:
                self.synapses[i] = quant_synapse(syn, spec.weights, readout=i == n_last)
            elif hasattr(syn, "quant_weight"):
                self.synapses[i] = float_synapse(syn)
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
        if self.quant is None:
            return self._forward_float(u, times, acts)
        return self._forward_quantized(u, times, acts)

    def _linear(self, syn: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        if isinstance(syn, nn.Linear):
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, stride=syn.stride, padding=syn.padding)

    @staticmethod
    def _pool(layer: dict, t: torch.Tensor, on_times: bool) -> torch.Tensor:
        """Pooling/flatten; max-pool of activations is min-pool of spike times."""
        kind = layer["kind"]
        if kind == "flatten":
            return t.flatten(1)
        if kind == "avgpool":
            return F.avg_pool2d(t, layer["kernel"]) if on_times else F.avg_pool2d(t, layer["kernel"], divisor_override=1)
        return -F.max_pool2d(-t, layer["kernel"]) if on_times else F.max_pool2d(t, layer["kernel"])

    def _forward_float(self, u, times, acts):
        t = 1.0 - u  # input spike times; u = 0 -> t = 1 = t_max of the input window (silent)
        t_ref = 1.0
        if times is not None:
            times.append(silent_to_inf(t, 1.0))
        if acts is not None:
            acts.append(u)
        self.batch_max = []
        bounds = self.window_bounds()
        for n, segment in enumerate(self._segments):
            for layer in segment[:-1]:
                t = self._pool(layer, t, on_times=True)
            syn = self.synapses[n]
            weight = syn.weight
            if self.noise is not None:
                weight = self.noise.perturb_weight(weight, float(weight.detach().abs().max()))
            z = self._linear(syn, activation(t, t_ref), weight, syn.bias)
            if n == self.n_hidden:
                return z
            t_min, t_max = bounds[n]
            if self.noise is not None and self.noise.threshold:
                z = z - self.noise.normal(z, self.noise.threshold * (t_max - t_min))
            t = spike_time(z, t_min, t_max, self.saturate)
            if self.noise is not None and self.noise.jitter:
                eps = self.noise.normal(t, self.noise.jitter * (t_max - t_min))
                t = torch.clamp(t + eps * (t < t_max), t_min, t_max)
            if self.track_windows:
                self.batch_max.append(float(t_max - t.detach().min()))
            if times is not None:
                times.append(silent_to_inf(t, t_max))
            if acts is not None:
                acts.append(activation(t, t_max))
            t_ref = t_max
        raise AssertionError("unreachable: the last segment is the read-out")

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
        if spec.weights is None:
            weight = syn.weight.double()
            if self.noise is not None:
                weight = self.noise.perturb_weight(weight, float(weight.detach().abs().max()))
            unit = torch.full((syn.weight.shape[0],), gain * delta_in, dtype=torch.float64, device=weight.device)
            V = self._linear(syn, k_in, weight, None) + _per_channel(syn.bias.double() / unit, k_in.ndim)
            return V, unit, self._slope(n, unit)
        q, beta, sigma, unit = self.integer_parameters(n, gain)
        if self.noise is not None and (self.noise.weight_mult or self.noise.weight_add):
            noisy = self.noise.perturb_weight(q, float(spec.weights.qmax)).detach().round()
            q = straight_through(noisy.clamp(spec.weights.qmin, spec.weights.qmax), q)
        dtype = _exact_float(q, steps_in / gain)
        V = self._linear(syn, k_in.to(dtype), q.to(dtype), None).double() + _per_channel(beta * steps_in, k_in.ndim)
        return V, unit, sigma

    def segment_gain(self, n: int) -> float:
        """1 / (area of the average pooling between synapse n and the previous spiking layer)."""
        return 1.0 / math.prod(layer["kernel"] ** 2 for layer in self._segments[n][:-1] if layer["kind"] == "avgpool")

    def segment_potential(self, n: int, k: torch.Tensor):
        """(V, unit, sigma) of synapse n from the previous spiking layer's integer activations k.

        Pooling between them is sum pooling of k, its 1/area folded into the weight scale (gain).
        """
        for layer in self._segments[n][:-1]:
            k = self._pool(layer, k, on_times=False)
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
            if self.noise is not None and self.noise.threshold:
                std = self.noise.threshold * (1.0 if self.noise.units == "steps" else T)
                offset = self.noise.normal(V, 1.0) * std * _per_channel(sigma, V.ndim)
                V = V - (offset.round() if spec.weights is not None else offset)
            sig = _per_channel(sigma, V.ndim)
            k = straight_through(numerics.fire(V.detach(), sig, T), (V / sig).clamp(0, T))
            if self.noise is not None and self.noise.jitter:
                std = self.noise.jitter * (1.0 if self.noise.units == "steps" else T)
                k = straight_through(numerics.jitter(k.detach(), self.noise.normal(k, std).round(), T), k)
            if times is not None:
                t_min, t_max = bounds[n]
                times.append(t_min + numerics.spike_step(k.detach(), T) * (t_max - t_min) / T)
            if acts is not None:
                acts.append(k.detach())
        raise AssertionError("unreachable: the last segment is the read-out")

    # ------------------------------------------------------------------ windows
    def grow_windows(self, factor: float = 10.0) -> None:
        """Adaptive window rule (reference code): L_n <- max(L_n, factor x largest batch activation).

        Uses the activations recorded by the last forward pass (``track_windows``); grow-only.
        """
        for n, batch_max in enumerate(self.batch_max):
            if factor * batch_max > float(self.windows[n]):
                self.windows[n] = factor * batch_max

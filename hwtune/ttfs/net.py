"""TTFSNet: a B1 time-to-first-spike network, float (closed form) or quantized (integer-exact).

The net is a graph (hwtune.graph): layers in topological order, each the sum of branches (the
activations of its sources through shape ops into a synapse, or into an identity). Float mode
follows docs/design.md "Float TTFS model": input window [0, 1], layer n's window [t_min_n, t_max_n]
starts when the last of its inputs' windows ends, read-out = membrane at the start of its window.
Quantized mode (``net.quant`` set) computes exactly the integers of docs/design.md "Integer model"
and "Graphs" in float64 tensors, with straight-through gradients equal to the float model's.
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from hwtune import graph, numerics
from hwtune.architectures import canonical_arch
from hwtune.device_noise import Geometry
from hwtune.layers import exact_dtype, kind_of
from hwtune.layers.identity import Identity
from hwtune.ttfs.arch import glorot_init, make_synapse
from hwtune.ttfs.functional import activation, silent_to_inf, spike_time, straight_through
from hwtune.ttfs.noise_state import NoiseState
from hwtune.ttfs.quant import QuantSpec, float_synapse, quant_synapse, scale_per_neuron, weight_mantissa

#: Hidden window L_n (tau_c) of a net trained from scratch: 1.5 x 1000 (reference code).
DEFAULT_WINDOW = 1500.0
#: Largest relative deviation from a power of two that two branches' units of one layer may show (float rounding).
UNIT_RATIO_TOLERANCE = 1e-9


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


def power_of_two(ratio: float, where: str) -> int:
    """e with ratio = 2^e (up to float rounding), or ValueError naming ``where``."""
    e = round(math.log2(ratio))
    if abs(ratio / 2.0 ** e - 1) > UNIT_RATIO_TOLERANCE:
        raise ValueError(f"{where}: its inputs' potential units differ by {ratio:.6g}, not a power of two, so no "
                         "integer weights add them exactly; put the net on its time grid with set_quant, which "
                         "aligns the windows of joined layers")
    return e


class LayerIntegers(NamedTuple):
    """The integers of one layer of a net on a time grid (TTFSNet.integer_parameters).

    branches: per branch (q, shift, scales): its weight mantissas (float64, straight-through gradient;
    W itself for float weights), the power of two it is scaled by, the powers of two a concat scales
    its sources by. beta: the per-step bias mantissa per channel (None for float weights). sigma: the
    firing slope per channel (None for the read-out). unit: the float value of one potential unit per
    channel. offset: what V gets from the bias, beta T (b / unit for float weights).
    """

    branches: list
    beta: torch.Tensor | None
    sigma: torch.Tensor | None
    unit: torch.Tensor
    offset: torch.Tensor


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
        self.graph = graph.read(self.arch, self.input_shape)
        self.synapses = nn.ModuleList(make_synapse(self.arch[i]).to(dtype) for i in self.graph.synapses)
        glorot_init(self.synapses)
        n_hidden = self.graph.n_hidden
        if windows is None:
            windows = [DEFAULT_WINDOW] * n_hidden
        self.register_buffer("windows", torch.as_tensor(windows, dtype=torch.float64).reshape(n_hidden).clone())
        self.saturate = False
        self.quant: QuantSpec | None = None
        self.noise: NoiseState | None = None
        self.track_windows = False
        self.batch_max: list[float] = []
        self.info: dict = {}  # dataset, target, history of passes, provenance (see hwtune.io)

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
    @property
    def layers(self) -> tuple:
        """The layers (hwtune.graph.Layer) in the graph's topological order, the read-out last."""
        return self.graph.layers

    @property
    def n_hidden(self) -> int:
        return self.graph.n_hidden

    def synapse_spec(self, s: int) -> dict:
        """The architecture dict of synapse ``s`` (an index into ``synapses``)."""
        return self.arch[self.graph.synapses[s]]

    def geometry(self) -> list[Geometry]:
        """Per layer: each branch's weight shape, unshared over the output positions for a convolution
        (C_out, C_in, K, K, H_o, W_o) or an identity (C, *positions), its neurons, whether it is hidden
        (hwtune.device_noise draws)."""
        def shape(branch, layer):
            weight = (layer.shape[0],) if branch.synapse is None else tuple(self.synapses[branch.synapse].weight.shape)
            return weight + tuple(layer.shape[1:])
        return [Geometry(weight_shapes=tuple(shape(b, layer) for b in layer.branches), neurons=math.prod(layer.shape),
                         hidden=n < self.n_hidden) for n, layer in enumerate(self.layers)]

    @property
    def dtype(self) -> torch.dtype:
        return self.synapses[0].weight.dtype

    def window_bounds(self) -> list[tuple[float, float]]:
        """[(t_min_n, t_max_n)] of the hidden layers in tau_c: a layer's window opens when the last of
        its inputs' windows closes (the input window is [0, 1]); the read-out's starts at :meth:`latency`."""
        ends, bounds = [1.0], []
        for layer, length in zip(self.layers, self.windows.tolist()):
            t_min = max(ends[p] for p in layer.sources)
            bounds.append((t_min, t_min + length))
            ends.append(t_min + length)
        return bounds

    def latency(self) -> float:
        """Classification latency in tau_c: the read-out's window start (a chain: 1 + sum of windows)."""
        ends = [1.0] + [t_max for _, t_max in self.window_bounds()]
        return max(ends[p] for p in self.layers[-1].sources)

    def timing(self) -> numerics.Timing:
        """The integer schedule of the quantized net (numerics.Timing over its graph)."""
        if self.quant is None:
            raise ValueError("latency in steps needs a time grid: quantize the net first")
        return numerics.Timing(self.quant.steps, self.quant.delay, self.graph.sources())

    def latency_steps(self) -> int:
        """Latency of the quantized net in time steps (numerics.Timing)."""
        return self.timing().latency

    def joined(self) -> set[int]:
        """Indices of the synapses whose layer sums several branches (they take one scale per layer)."""
        return {b.synapse for layer in self.layers if len(layer.branches) > 1 for b in layer.branches
                if b.synapse is not None}

    def set_quant(self, spec: QuantSpec | None) -> None:
        """Put the net on an integer time grid (and integer weights), or back to float. The windows of
        layers that a join adds up are aligned on the grid (:meth:`align_windows`)."""
        if spec is not None and len(spec.steps) != self.n_hidden + 1:
            raise ValueError(f"time grid needs {self.n_hidden + 1} window lengths (input + hidden), got {spec.steps}")
        readout = {b.synapse for b in self.layers[-1].branches} | self.joined()
        for s, syn in enumerate(self.synapses):
            layer = self.synapse_spec(s)
            if spec is not None and spec.weights is not None:
                self.synapses[s] = quant_synapse(layer, syn, spec.weights, per_layer=s in readout)
            elif hasattr(syn, "quant_weight"):
                self.synapses[s] = float_synapse(layer, syn)
        self.quant = spec
        if spec is not None:
            self.align_windows()

    # ------------------------------------------------------------------ time grid of joins
    def _delta(self, p: int) -> float:
        """Delta_p = L_p / T_p: tau_c per step of node p (0: the input window, length 1)."""
        return (1.0 if p == 0 else float(self.windows[p - 1])) / self.quant.steps[p]

    def align_windows(self) -> None:
        """Make every join exact on the grid: the units gain_b Delta_b of a layer's branches (and the
        Delta of a concat's sources) must be powers of two apart, since weight scales are. In
        topological order, each window that takes part in a join is scaled by the power of two nearest
        to it, f in [2^-1/2, 2^1/2), that makes it so against the join's earliest member; a window already
        aligned is kept (so aligning twice changes nothing). ValueError names a layer whose inputs are
        aligned already, differently (a cycle of joins whose gains disagree)."""
        fixed: set[int] = {0}
        for n, layer in enumerate(self.layers):
            members = [(p, 1.0) for b in layer.branches if len(b.sources) > 1 for p in b.sources]
            if len(layer.branches) > 1:
                members += [(min(b.sources, key=lambda p: self._delta(p)),
                             1.0 / b.gain) for b in layer.branches]
            if not members:
                continue
            ref, g_ref = min(members, key=lambda m: m[0])
            for p, g in members:
                ratio = self._delta(p) * g / (self._delta(ref) * g_ref)
                e = round(math.log2(ratio))
                if abs(ratio / 2.0 ** e - 1) <= UNIT_RATIO_TOLERANCE:
                    fixed.add(p)
                    continue
                if p in fixed:
                    raise ValueError(f"layer {layer.name!r}: the time grids of its inputs are aligned already and "
                                     f"disagree by {ratio:.6g}: no integer weights add them exactly")
                self.windows[p - 1] = self.windows[p - 1] * (2.0 ** e / ratio)
                fixed.add(p)
            fixed.add(ref)

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

    @staticmethod
    def _neurons(draw: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-neuron draw (B or 1, neurons) shaped like the layer's (B, C[, H, W]) tensor."""
        return draw.reshape(len(draw), *like.shape[1:]).to(like.dtype)

    def _branch_input(self, branch, values: list, integer: bool, scales=None):
        """The activations a branch's synapse reads: its sources' (times ``scales``, a concat's powers of
        two) through its shape ops."""
        xs = [values[p] if scales is None else values[p] * r for p, r in zip(branch.sources, scales or branch.sources)]
        for op in branch.ops:
            xs = [op.torch_apply(*xs, integer=integer)]
        return xs[0]

    def _synapse(self, branch, x, weight, bias):
        """A branch's synapse on x with ``weight``: its kind's torch forward, or the identity's."""
        if branch.synapse is None:
            return Identity.torch_apply(None, x, weight, bias)
        return kind_of(self.synapse_spec(branch.synapse)).torch_apply(self.synapses[branch.synapse], x, weight, bias)

    def _identity_weight(self, layer, like: torch.Tensor) -> torch.Tensor:
        return torch.ones(layer.shape[0], dtype=like.dtype, device=like.device)

    def _float_weight(self, n: int, b: int, branch, like: torch.Tensor):
        """(W, bias) of branch b of layer n, a device instance's weight mismatch applied (float nets)."""
        if branch.synapse is None:
            weight, bias = self._identity_weight(self.layers[n], like), None
        else:
            syn = self.synapses[branch.synapse]
            weight, bias = syn.weight, syn.bias
        factor = self.noise.weight_factor(n, b, weight) if self.noise is not None else None
        if factor is not None:
            weight = weight.reshape(weight.shape + (1,) * (factor.ndim - weight.ndim)) * factor.to(weight.dtype)
        return weight, bias

    def _forward_float(self, u, times, acts):
        t = 1.0 - u  # input spike times; u = 0 -> t = 1 = t_max of the input window (silent)
        values = [activation(t, 1.0)]
        if times is not None:
            times.append(silent_to_inf(t, 1.0))
        if acts is not None:
            acts.append(u)
        self.batch_max = []
        bounds = self.window_bounds()
        for n, layer in enumerate(self.layers):
            z = None
            for b, branch in enumerate(layer.branches):
                weight, bias = self._float_weight(n, b, branch, u)
                term = self._synapse(branch, self._branch_input(branch, values, False), weight, bias)
                z = term if z is None else z + term
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
            x = activation(t, t_max)
            values.append(x)
            if acts is not None:
                acts.append(x)
        raise AssertionError("unreachable: the last layer is the read-out")

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
    def _branch_grid(self, branch) -> tuple[float, list[float], float]:
        """(Delta, concat scales, window) of a branch's input: the finest Delta of its sources, each
        source's Delta over it (exact powers of two for integer weights: the grid is aligned), and that
        source's window L (tau_c)."""
        deltas = [self._delta(p) for p in branch.sources]
        finest = min(range(len(deltas)), key=lambda i: deltas[i])
        p = branch.sources[finest]
        window = 1.0 if p == 0 else float(self.windows[p - 1])
        scales = [d / deltas[finest] for d in deltas]
        if self.quant.weights is not None:
            scales = [2.0 ** power_of_two(r, f"a concat of {branch.sources}") for r in scales]
        return deltas[finest], scales, window

    def _branch_scale(self, branch, channels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, s): the branch's weight mantissas (straight-through; W itself for float weights) and
        its power-of-two scale per output channel (1 for an identity or float weights)."""
        if branch.synapse is None:
            ones = torch.ones(channels, dtype=torch.float64, device=device)
            return ones, ones
        syn = self.synapses[branch.synapse]
        if self.quant.weights is None:
            return syn.weight.double(), torch.ones(channels, dtype=torch.float64, device=syn.weight.device)
        q, scale = weight_mantissa(syn)
        return q.double(), scale_per_neuron(scale, channels).double()

    def integer_parameters(self, n: int) -> "LayerIntegers":
        """The integers of layer n of a net on a time grid (the numbers the export writes,
        hwtune.exporter): :class:`LayerIntegers`.

        Branch b's unit is s_b gain_b Delta_b (its weight scale, 1 / the area of its sum poolings, its
        input's tau_c per step); the layer's unit is the finest of them and branch b is scaled by
        2^shift_b, its unit over the layer's (docs/design.md "Graphs")."""
        layer = self.layers[n]
        channels = layer.shape[0]
        device = self.windows.device
        parts = []
        for branch in layer.branches:
            q, s = self._branch_scale(branch, channels, device)
            delta, scales, window = self._branch_grid(branch)
            s = s * (1.0 / branch.gain)
            parts.append((q, s, delta, scales, window))
        ref = min(range(len(parts)), key=lambda b: float(parts[b][1][0]) * parts[b][2])
        _, s_ref, delta_ref, _, window_ref = parts[ref]
        unit = s_ref * delta_ref
        branches = [(q, 0 if b == ref else power_of_two(float((s * delta / unit)[0]), f"layer {layer.name!r}"), scales)
                    for b, (q, s, delta, scales, _) in enumerate(parts)]
        steps_in = max(self.quant.steps[p] for p in layer.sources)
        # the bias is spread over the T integration steps: b / (unit T); one input: b / (s L), as unit T = s L
        window = window_ref if steps_in == round(window_ref / delta_ref) else float(delta_ref * steps_in)
        b = sum(self.synapses[br.synapse].bias.double() for br in layer.branches if br.synapse is not None)
        if not torch.is_tensor(b):
            b = torch.zeros(channels, dtype=torch.float64, device=device)
        sigma = self._slope(n, unit, delta_ref)
        if self.quant.weights is None:
            return LayerIntegers(branches, None, sigma, unit, b / unit)
        beta = straight_through(numerics.bias_mantissa(b.detach(), s_ref, window, self.quant.weights.bias_bits),
                                b / (s_ref * window))
        return LayerIntegers(branches, beta, sigma, unit, beta * steps_in)

    def _slope(self, n: int, unit: torch.Tensor, delta_in: float):
        """sigma per channel of hidden layer n (None for the read-out): Delta_n / unit, rounded to a
        positive integer when the weights are integer (numerics.slope)."""
        if n == self.n_hidden:
            return None
        delta_out = float(self.windows[n]) / self.quant.steps[n + 1]
        if self.quant.weights is None:
            return delta_out / unit
        sigma = numerics.slope(delta_out, (unit / delta_in).detach().cpu().numpy(), delta_in)
        return torch.as_tensor(sigma, dtype=torch.float64, device=unit.device)

    def layer_potential(self, n: int, values: list):
        """Membrane V of layer n from the integer activations of every node so far (``values``: the
        input's, then each layer's). Returns (V, unit, sigma): V in potential units (float64,
        integer-valued when the weights are quantized), unit = float value of one potential unit per
        channel, sigma = firing slope per channel (None for the read-out)."""
        layer, integers = self.layers[n], self.integer_parameters(n)
        steps_in = max(self.quant.steps[p] for p in layer.sources)
        V = None
        for b, (branch, (q, shift, scales)) in enumerate(zip(layer.branches, integers.branches)):
            x = self._branch_input(branch, values, True, scales if len(branch.sources) > 1 else None)
            term = self._integer_term(n, b, branch, x, q, steps_in * max(scales) * branch.gain)
            term = term * 2.0 ** shift if shift else term
            V = term if V is None else V + term
        return V + _per_channel(integers.offset, V.ndim), integers.unit, integers.sigma

    def _integer_term(self, n: int, b: int, branch, x, q, k_max: float):
        """sum q x of one branch, exact (float32 where every partial sum allows it, else float64),
        with a device instance's mismatch q' = clip(round(q (1 + m eps))) per physical synapse."""
        factor = self.noise.weight_factor(n, b, q) if self.noise is not None else None
        if self.quant.weights is None:
            if factor is not None:
                q = q.reshape(q.shape + (1,) * (factor.ndim - q.ndim)) * factor
            return self._synapse(branch, x, q, None)
        if factor is not None:   # a device instance: q' = clip(round(q (1 + m eps)), range), per physical synapse
            q = q.reshape(q.shape + (1,) * (factor.ndim - q.ndim))
            eps = self.noise.device.weight_eps[n][b]
            q = straight_through(numerics.mismatch(q.detach(), torch.as_tensor(eps, device=q.device),
                                                   self.noise.spec.weight_mismatch, self.quant.weights.qmin,
                                                   self.quant.weights.qmax), q * factor)
        dtype = _exact_float(q if q.ndim > 1 else q.reshape(-1, 1), k_max)
        return self._synapse(branch, x.to(dtype), q.to(dtype), None).double()

    def _forward_quantized(self, u, times, acts):
        spec = self.quant
        k = numerics.encode_input(u, spec.steps[0])
        values = [k]
        if times is not None:
            times.append(silent_to_inf(numerics.spike_step(k, spec.steps[0]) / spec.steps[0], 1.0))
        if acts is not None:
            acts.append(k)
        bounds = self.window_bounds()
        for n in range(len(self.layers)):
            V, unit, sigma = self.layer_potential(n, values)
            if n == self.n_hidden:
                return (V * _per_channel(unit, V.ndim)).to(self.dtype)
            T = spec.steps[n + 1]
            sig = _per_channel(sigma, V.ndim)
            shift = self.noise.threshold_shift(n, V) if self.noise is not None else None
            if shift is not None:
                V = V - numerics.threshold_offset(self._neurons(shift, V), T, sig)
            k = straight_through(numerics.fire(V.detach(), sig, T), (V / sig).clamp(0, T))
            k = self._integer_spike_noise(n, k, T)
            values.append(k)
            if times is not None:
                t_min, t_max = bounds[n]
                times.append(t_min + numerics.spike_step(k.detach(), T) * (t_max - t_min) / T)
            if acts is not None:
                acts.append(k.detach())
        raise AssertionError("unreachable: the last layer is the read-out")

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

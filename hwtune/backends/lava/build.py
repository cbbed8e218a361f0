"""Artifact -> Lava's stock Loihi 2 processes: the build a chip can run (docs/design.md, "Loihi 2 mapping").

Every process is Lava's own, with a Loihi 2 model in lava-loihi: ``LIFReset`` (lava.proc.lif),
``Dense`` / ``Sparse`` (``DelayDense`` / ``DelaySparse`` for a synaptic delay d > 1), and the io
adapters at the host boundary: ``Injector`` (input spikes streamed from the host), ``RingBuffer``
(each layer's clock, cyclic with the sample period), ``Extractor`` (hidden spikes to the host) and
``Monitor`` (the read-out's v).

The artifact's neuron is LIF with a perfect current integrator: Lava decays u by du + ds_offset
with ds_offset = 1 (lava/proc/lif/models.py), so du = -1 gives decay 0 (what lava-dl netx writes
for a CUBA neuron of iDecay 0: du = iDecay - 1), and dv = 0 makes v a perfect integrator too. Then
u += a_in and v += u, in units of 64 (act_shift; everything below is in weight units, v / 64),
is numerics.integrate with beta moved into u. What the stock neuron lacks (a per-neuron slope
after the window, a per-neuron threshold, one spike) comes from a per-layer clock: host-timed
spikes through Dense synapses whose weights change u on given steps of the sample. Every neuron
spikes exactly once per sample, a silent one (k = 0) at m = T_n, so by its first firing step F_n
every input has arrived and u = sum_j q_ij + beta_i is known. The clock's table, its proof and its
register bounds are numerics.stock_clock's (the integer rule); this module turns it into processes.
LIFReset zeroes u and v at R of every sample.

Every register bound (u, v, vth, bias, the 16-bit a_in) is checked before anything is built, over
every possible input (:func:`plan`, naming layer, neuron, register and limit).
"""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.

import typing as ty
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hwtune import numerics, progress
from hwtune.artifact import Artifact, ArtifactError, raise_violations, weight_violations
from hwtune.backends.lava.conv import a_out_violations, conv_kernel, conv_process
from hwtune.layers import OpError

#: Lava's du for a current that does not decay (decay du + ds_offset = 0).
PERFECT_INTEGRATOR_DU = -1
#: Where an artifact keeps the potential range its guard and kick are sized for (:func:`calibrate`).
GUARD_KEY = "lava_guard"
#: The calibrated range is the observed one times this (capped at the worst case).
GUARD_MARGIN = 2


@dataclass
class StockLayer:
    """Integer parameters of one layer's stock build (weight units; steps inside the sample period).

    matrix: the layer's synapse matrix q (n_out, all inputs stacked), array or CSR. inputs: per
    input, (node it reads: 0 the sample, m layer m; its columns of ``matrix`` as a slice; the delay in
    steps from a spike to its arrival, d + D: numerics.Timing). steps_out: T_n (0: read-out). reset:
    R, the first integration step; fire_start: F_n, its first firing step (spikes at F_n + m,
    m = 0..T_n); the read-out's v holds V from F_{N+1} - 1 on. threshold: H (vth). clock: step ->
    change of u per neuron on that step (the clock's Dense weights). kernels: per input, the
    ConvKernel Lava's Conv holds it as, or None for a Dense/Sparse synapse (conv.conv_kernel).
    """

    name: str
    matrix: ty.Any
    inputs: ty.List[ty.Tuple[int, slice, int]]
    steps_out: int
    reset: int
    fire_start: int
    threshold: int
    clock: ty.Dict[int, np.ndarray]
    kernels: ty.List[ty.Any]

    @property
    def readout(self) -> bool:
        return self.steps_out == 0

    @property
    def n_out(self) -> int:
        return self.matrix.shape[0]

    def input_matrices(self) -> ty.List[ty.Tuple[int, ty.Any, int]]:
        """(node, its block of the synapse matrix, delay) per input: one synapse process each."""
        return [(node, self.matrix[:, columns], delay) for node, columns, delay in self.inputs]

    def process_names(self) -> ty.List[str]:
        """The Lava process of each input: Conv, else :func:`_process_name`."""
        return ["Conv" if kernel is not None else _process_name(m, delay)
                for (_, m, delay), kernel in zip(self.input_matrices(), self.kernels)]


def _row_sums(matrix) -> ty.Tuple[np.ndarray, np.ndarray]:
    """sum_j max(q_ij, 0) and sum_j max(-q_ij, 0) per row (int64)."""
    if sp.issparse(matrix):
        pos, neg = matrix.maximum(0), (-matrix).maximum(0)
        return (np.asarray(pos.sum(axis=1), dtype=np.int64).ravel(),
                np.asarray(neg.sum(axis=1), dtype=np.int64).ravel())
    q = np.asarray(matrix, dtype=np.int64)
    return np.maximum(q, 0).sum(axis=1), np.maximum(-q, 0).sum(axis=1)


def period_steps(artifact: Artifact) -> int:
    """Steps between samples, which are pipelined: the smallest power of two >= the steps any layer is
    busy with a sample (numerics.stock_busy_steps; the input's T_0 + 1 too), so that a layer takes
    the next sample as soon as it is free while the later layers still work on the earlier ones. A
    power of two because LIFReset's reset_interval must be one on the chip (lava-dl's netx
    tutorials, which use LIFReset on Loihi 2)."""
    timing = artifact.timing
    busy = [numerics.stock_busy_steps(timing.steps_in(n), 0 if layer.readout else layer.window_steps)
            for n, layer in enumerate(artifact.layers)]
    return numerics.power_of_two_above(max(artifact.input_steps + 1, *busy) - 1)


def _layer_plan(layer, q, inputs, kernels, steps_in: int, integration: range,
                guard: ty.Optional[ty.Tuple[int, int]]) -> ty.Tuple[StockLayer, ty.List[str]]:
    """The plan of one layer that integrates on the steps ``integration`` (numerics.Timing.integration:
    R .. F_n - 1), and the register violations found (the clock: numerics.stock_clock). Every register
    bound is a worst case over all inputs; only the guard L and the kick K may be sized for ``guard`` = (smallest V after
    integration, largest V while integrating), a calibrated range (:func:`calibrate`): an input
    outside it makes a neuron spike early or not at all, which the run detects (run._decode)."""
    positions = layer.n_out // layer.synapse.out_channels
    beta = np.repeat(np.asarray(layer.bias, dtype=np.int64), positions)
    pos, neg = _row_sums(q)
    sigma, steps_out = (None, 0) if layer.readout else \
        (np.repeat(np.asarray(layer.slope, dtype=np.int64), positions), layer.window_steps)
    stock = numerics.stock_clock(pos, neg, beta, steps_in, integration, sigma, steps_out, guard)
    where = f"layer {layer.name!r}"
    problems = [] if stock.threshold <= numerics.LAVA_VTH_MAX else \
        [f"{where}: vth = {stock.threshold} > {numerics.LAVA_VTH_MAX} ({numerics.LAVA_VTH_BITS} bits)"]
    for register, (lo, hi) in (("u", stock.u), ("v", stock.v)):
        for i in np.flatnonzero((hi > numerics.LAVA_STATE_MAX) | (lo < -numerics.LAVA_STATE_MAX))[:3]:
            problems.append(f"{where} neuron {i}: {register} reaches [{lo[i]}, {hi[i]}] weight units, outside "
                            f"the {numerics.LAVA_STATE_BITS}-bit register (+-{numerics.LAVA_STATE_MAX} x "
                            f"{2 ** numerics.LAVA_ACT_SHIFT})")
    for step, values in sorted(stock.clock.items()):
        need = np.abs(values) + pos + neg          # the clock's change and the most the inputs bring in one step
        for i in np.flatnonzero(need > numerics.LAVA_A_IN_MAX)[:3]:
            problems.append(f"{where} neuron {i}: a_in on step {step} reaches {need[i]} > {numerics.LAVA_A_IN_MAX} "
                            f"({numerics.LAVA_A_IN_BITS} bits)")
    for (node, columns, delay), kernel in zip(inputs, kernels):
        if kernel is not None:
            problems += a_out_violations(f"{where} input {node}", *_row_sums(q[:, columns]))
        if delay > numerics.SYNAPTIC_DELAY[1]:
            problems.append(f"{where}: spikes of {'the input' if node == 0 else f'layer {node}'} need a delay of "
                            f"{delay} steps, more than the {numerics.SYNAPTIC_DELAY[1]} a Loihi 2 synapse holds")
    return StockLayer(name=layer.name, matrix=q, inputs=inputs, steps_out=steps_out, reset=integration.start,
                      fire_start=integration.stop, threshold=stock.threshold, clock=stock.clock,
                      kernels=kernels), problems


def plan(artifact: Artifact) -> ty.List[StockLayer]:
    """The stock build's integer parameters of every layer, or ArtifactError naming each layer,
    neuron, register and limit that Loihi 2's LIF and synapses cannot hold."""
    raise_violations(weight_violations(artifact), "violation(s) for Lava")
    if artifact.weight_bits > numerics.LAVA_WEIGHT_BITS:
        raise ArtifactError(f"Lava's synapses hold at most {numerics.LAVA_WEIGHT_BITS} weight bits, got "
                            f"{artifact.weight_bits}")
    if artifact.overflow != "error":
        raise ArtifactError(f"overflow {artifact.overflow!r}: the stock neuron's registers are checked to hold every "
                            f"value ({numerics.LAVA_STATE_BITS} bits, {numerics.LAVA_ACT_SHIFT} of them below the "
                            f"weight unit), so the artifact's narrower {artifact.membrane_bits}-bit "
                            f"{artifact.overflow} semantics cannot be reproduced; export for a target with overflow: error")
    guards, timing = _guards(artifact), artifact.timing
    layers, problems = [], []
    for n, (layer, sources) in enumerate(zip(artifact.layers, timing.sources)):
        try:
            q = layer.stage.matrix()
        except OpError as e:
            raise ArtifactError(f"layer {layer.name!r}: {e}") from None
        ends = np.cumsum([0, *layer.stage.n_in])
        inputs = [(p, slice(int(a), int(b)), artifact.synaptic_delay + timing.arrival_delay(n, p))
                  for p, a, b in zip(sources, ends[:-1], ends[1:])]
        kernels = [conv_kernel(layer.stage, inputs[0][2])[0]] if layer.stage.arity == 1 else [None] * len(inputs)
        stock, found = _layer_plan(layer, q, inputs, kernels, timing.steps_in(n), timing.integration(n),
                                   guards.get(layer.name))
        layers.append(stock)
        problems += found
    if problems:
        raise ArtifactError(f"{len(problems)} register violation(s) for Loihi 2's LIF: " + "; ".join(problems))
    return layers


def _guards(artifact: Artifact) -> ty.Dict[str, ty.Tuple[int, int]]:
    """The calibrated ranges in ``artifact.meta[GUARD_KEY]`` (none: worst cases), checked."""
    record = artifact.meta.get(GUARD_KEY)
    if record is None:
        return {}
    names = {layer.name for layer in artifact.hidden}
    ranges = record.get("ranges") if isinstance(record, dict) else None
    if not isinstance(ranges, dict) or not set(ranges) <= names or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and r[0] <= 0 <= r[1] for r in ranges.values()):
        raise ArtifactError(f"meta.{GUARD_KEY}: expected {{'ranges': {{hidden layer: [lo <= 0, hi >= 0]}}, ...}} "
                            f"with integer bounds, got {record!r:.200}")
    return {name: tuple(r) for name, r in ranges.items()}


def potential_ranges(artifact: Artifact, k0: np.ndarray, batch: int = 256) -> ty.Dict[str, ty.Tuple[int, int]]:
    """Per hidden layer, over the samples k0 (B, n_in): the smallest V after integration and the
    largest V on any integration step, V(s) = sum_j q_ij max(0, k_j - (T - s)) + beta_i s after
    s = 1..T steps (an input with activation k arrives T - k steps into the window, whichever layer
    it comes from: numerics.Timing)."""
    from hwtune.backends.emulator import FastEmulator

    emulate, timing = FastEmulator(artifact), artifact.timing
    ranges = {layer.name: (0, 0) for layer in artifact.hidden}
    for start in progress.bar(range(0, len(k0), batch), desc="calibrate Lava guards", unit="batch"):
        activations = emulate(k0[start:start + batch]).activations
        for n, (layer, sources) in enumerate(zip(artifact.hidden, timing.sources)):
            lo, hi = ranges[layer.name]
            steps = timing.steps_in(n)
            for s in range(1, steps + 1):
                V = layer.potential([numerics.counted_steps(activations[p], steps, s) for p in sources], s)
                hi = max(hi, int(V.max()))
            ranges[layer.name] = (min(lo, int(V.min())), hi)
    return ranges


def calibrate(artifact: Artifact, k0: np.ndarray, source: str) -> None:
    """Size the guards of ``artifact`` for the potentials of the samples k0 (B, n_in; ``source``
    says which, e.g. "fashion-mnist train[:1000]"): their range times GUARD_MARGIN, kept in
    ``artifact.meta[GUARD_KEY]``. Without it every guard is sized for the worst case, which wide
    layers (the VGG's 8024-input dense layer) cannot fit in a 16-bit a_in."""
    ranges = potential_ranges(artifact, k0)
    artifact.meta[GUARD_KEY] = {"ranges": {name: [GUARD_MARGIN * lo, GUARD_MARGIN * hi] for name, (lo, hi) in ranges.items()},
                                "observed": {name: list(r) for name, r in ranges.items()},
                                "samples": int(len(k0)), "source": source, "margin": GUARD_MARGIN}


def clock_rasters(layer: StockLayer, period: int) -> ty.List[ty.Tuple[np.ndarray, np.ndarray, int]]:
    """One layer's clock: (spikes (rows, period) of a cyclic RingBuffer, weights (n_out, rows) of the
    Dense it feeds, scale exponent) for the low digits (scale 1, one row per clock step) and the
    high digits (scale 128, a row per digit: numerics.weight_digits), each left out when all its
    weights are 0. A spike in column s - 1 arrives on step s."""
    steps = sorted(layer.clock)
    digits = [numerics.weight_digits(np.broadcast_to(layer.clock[s], (layer.n_out,))) for s in steps]
    high_steps = [s for s, (_, high) in zip(steps, digits) for _ in range(high.shape[1])]
    low = np.stack([d[0] for d in digits], axis=1)
    high = np.hstack([d[1] for d in digits])
    clocks = []
    for row_steps, weights, scale in ((steps, low, 0), (high_steps, high, numerics.DIGIT_BITS)):
        if not weights.any():      # no high digit anywhere (every value below 128): no second clock
            continue
        raster = np.zeros((len(row_steps), period), dtype=np.int32)
        raster[np.arange(len(row_steps)), [(s - 1) % period for s in row_steps]] = 1
        clocks.append((raster, weights, scale))
    return clocks


def input_spikes(k0: np.ndarray, steps: int, period: int) -> ty.Callable[[int], np.ndarray]:
    """Input spikes of step t of the run, (n_in,): input j of sample b fires at b P + T_0 - k0_j
    (k0_j = 0: at b P + T_0, so that every input spikes once); none after the last sample's."""
    m = numerics.step_of(np.asarray(k0, dtype=np.int64), steps)

    def at(t: int) -> np.ndarray:
        b, tau = divmod(t, period)
        return (m[b] == tau).astype(np.int64) if b < len(m) else np.zeros(m.shape[1], dtype=np.int64)

    return at


def costs(artifact: Artifact):
    """What the stock build adds for the resource map (hwtune.mapper.Build): each layer's clock
    inputs and synapse process; every neuron and input spikes exactly once per sample and every
    clock input once, so an inference takes one synaptic event per synapse, clock synapses included."""
    from hwtune.mapper import Build

    layers, period = plan(artifact), period_steps(artifact)
    rows = [sum(len(raster) for raster, _, _ in clock_rasters(layer, period)) for layer in layers]
    return Build(clock_rows=rows, processes=[" + ".join(layer.process_names()) for layer in layers],
                 source="Lava stock build: every neuron spikes once per sample", period_steps=period,
                 kernels=[all(kernel is not None for kernel in layer.kernels) for layer in layers])


@dataclass
class LavaNetwork:
    """The processes of one run. k0: the validated input activations (B, n_in); injector: input
    spikes streamed from the host (``inputs(t)`` gives step t's); extractors: one per hidden layer
    (its spikes, every step); monitor: the read-out's v; layers: the plans; processes: every
    process built (for process_models); period: the steps between samples, which are pipelined:
    layer n works on sample b in steps b P + [R_n, R_n + P)."""

    layers: ty.List[StockLayer]
    k0: np.ndarray
    injector: ty.Any
    inputs: ty.Callable[[int], np.ndarray]
    extractors: list
    monitor: ty.Any
    readout: ty.Any
    processes: list
    period: int

    @property
    def n_samples(self) -> int:
        return len(self.k0)

    @property
    def total_steps(self) -> int:
        """Up to the end of the last layer's slot of the last sample: B P + the largest R_n."""
        return self.period * self.n_samples + max(layer.reset for layer in self.layers)


def _process_name(matrix, delay: int) -> str:
    """The Lava process that holds ``matrix``: Dense (array) or Sparse (CSR), Delay* for a delay d > 1."""
    return ("Delay" if delay > 1 else "") + ("Sparse" if sp.issparse(matrix) else "Dense")


def _synapse(matrix, bits: int = numerics.LAVA_WEIGHT_BITS, scale_exp: int = 0, delay: int = 1):
    """The :func:`_process_name` process whose a_out is 2^scale_exp matrix @ s exactly (entries within
    ``bits`` signed bits, numerics.lava_weights), sent ``delay`` steps after the spike."""
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode

    if sp.issparse(matrix):
        weights = sp.csr_matrix(matrix, dtype=np.int64)
        weights.data, exp = numerics.lava_weights(weights.data, bits)
        weights = weights.astype(np.int32)
    else:
        weights, exp = numerics.lava_weights(np.asarray(matrix), bits)
    process = {"Dense": Dense, "Sparse": Sparse, "DelayDense": DelayDense,
               "DelaySparse": DelaySparse}[_process_name(matrix, delay)]
    delays = {} if delay == 1 else {"delays": _delays(weights, delay - 1)}
    return process(weights=weights, num_weight_bits=bits, sign_mode=SignMode.MIXED, weight_exp=exp + scale_exp,
                   **delays)


def _delays(weights, steps: int):
    """Delay* processes' ``delays``: ``steps`` on every synapse of ``weights``. A CSR of the weights'
    pattern for a sparse matrix (an int makes Lava's DelaySparse store a dense n_out x n_in delay
    matrix: 1.26 GB for a 12,544-neuron skip, and far more while it sorts weights by delay each step)."""
    if not sp.issparse(weights):
        return steps
    return sp.csr_matrix((np.full(weights.nnz, steps, dtype=int), weights.indices, weights.indptr),
                         shape=weights.shape)


def build_network(artifact: Artifact, k0) -> LavaNetwork:
    """Lava's stock processes for ``artifact`` fed with input activations ``k0`` (B, n_in), samples
    pipelined (a new one every :func:`period_steps`). Refuses (ArtifactError) what :func:`plan` refuses."""
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.injector import Injector
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.monitor.process import Monitor

    period = period_steps(artifact)
    layers = plan(artifact)
    k0 = artifact.input_activations(k0)
    injector = Injector(shape=(artifact.n_in,))
    processes, extractors, spikes = [injector], [], [injector.out_port]     # spikes: every node's out port
    for layer in layers:
        neuron = LIFReset(shape=(layer.n_out,), du=PERFECT_INTEGRATOR_DU, dv=0, vth=layer.threshold,
                          reset_interval=period, reset_offset=(layer.reset + 1) % period, name=layer.name)
        for (node, matrix, delay), kernel in zip(layer.input_matrices(), layer.kernels):
            if kernel is not None:
                processes.append(conv_process(kernel, spikes[node], neuron.a_in))
                continue
            synapse = _synapse(matrix, artifact.weight_bits, delay=delay)
            spikes[node].connect(synapse.s_in)
            synapse.a_out.connect(neuron.a_in)
            processes.append(synapse)
        processes.append(neuron)
        for raster, weights, scale in clock_rasters(layer, period):
            clock, clock_synapse = RingBuffer(data=raster), _synapse(weights, scale_exp=scale)
            clock.s_out.connect(clock_synapse.s_in)
            clock_synapse.a_out.connect(neuron.a_in)
            processes += [clock, clock_synapse]
        if not layer.readout:
            extractor = Extractor(shape=(layer.n_out,), buffer_size=period)
            neuron.s_out.connect(extractor.in_port)
            extractors.append(extractor)
            processes.append(extractor)
            spikes.append(neuron.s_out)
    monitor = Monitor()
    net = LavaNetwork(layers=layers, k0=k0, injector=injector, inputs=input_spikes(k0, artifact.input_steps, period),
                      extractors=extractors, monitor=monitor, readout=neuron, processes=processes + [monitor],
                      period=period)
    monitor.probe(target=neuron.v, num_steps=net.total_steps)
    return net

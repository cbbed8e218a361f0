"""Artifact -> a network of Lava processes running B samples back to back.

Timing (lava-nc 0.10.0, checked in its source and in tests/test_lava.py): Lava's time_step
starts at 1 and our step is t = time_step - 1. The input RingBuffer sends column
(time_step - 1) of its data, so column t holds the input spikes of step t. Dense sends on
step t + 1 what it accumulated on step t (one step of synaptic delay, d = 1); for d > 1 a
DelayDense with delay d - 1 does the same d steps later. A neuron's s_out reaches a
SpikeRecorder on the same step. Sample b occupies steps [b P, (b + 1) P) with
P = latency + gap, so a step there is the artifact's step plus b P.
"""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.

from dataclasses import dataclass

import numpy as np
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.io.source import RingBuffer as SpikeSource
from lava.utils.weightutils import SignMode

from hwtune import numerics
from hwtune.artifact import Artifact, ArtifactError, membrane_violations, raise_violations, weight_violations
from hwtune.backends.lava.process import SpikeRecorder, TTFSNeuron

#: Registers of the process model are int32 (see models.py).
MAX_MEMBRANE_BITS = 32


@dataclass
class LavaNetwork:
    """The processes of one run: input source, synapses, neurons (hidden then read-out), and one
    spike recorder per hidden layer; inputs: the validated k0 (B, n_in)."""

    inputs: np.ndarray
    source: SpikeSource
    synapses: list
    neurons: list[TTFSNeuron]
    recorders: list[SpikeRecorder]
    period: int
    n_samples: int

    @property
    def total_steps(self) -> int:
        return self.period * self.n_samples


def input_raster(artifact: Artifact, k0: np.ndarray, period: int) -> np.ndarray:
    """Input spikes (n_in, B * period), int32: input j of sample b spikes at b P + T_0 - k0[b, j]."""
    batch = len(k0)
    raster = np.zeros((batch, artifact.n_in, period), dtype=np.int32)
    b, j = np.nonzero(k0)
    raster[b, j, artifact.input_steps - k0[b, j]] = 1
    return raster.transpose(1, 0, 2).reshape(artifact.n_in, batch * period)


def _synapse(q: np.ndarray, bits: int, delay: int):
    """Dense (d = 1) or DelayDense (d > 1) whose a_out is sum_j q_ij exactly (numerics.lava_weights).

    sign_mode is passed as MIXED: Lava would otherwise infer INHIBITORY for an all-negative matrix
    and clip q << (9 - b) = -256 to -255.
    """
    weights, weight_exp = numerics.lava_weights(q, bits)
    kwargs = dict(weights=weights, weight_exp=weight_exp, num_weight_bits=bits, sign_mode=SignMode.MIXED)
    return Dense(**kwargs) if delay == 1 else DelayDense(delays=delay - 1, **kwargs)


def build_network(artifact: Artifact, k0, gap: int = 2) -> LavaNetwork:
    """Lava processes for ``artifact`` fed with input activations ``k0`` (B, n_in).

    Refuses (ArtifactError) weights outside ``weight_bits``, more than 8 weight bits (Lava Dense),
    registers that could overflow, or membrane_bits > 32.
    """
    if not (isinstance(gap, int) and gap >= 0):
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    if artifact.weight_bits > 8 or artifact.membrane_bits > MAX_MEMBRANE_BITS:
        raise ArtifactError(f"the Lava backend holds at most 8 weight bits and {MAX_MEMBRANE_BITS} membrane bits, "
                            f"got {artifact.weight_bits} and {artifact.membrane_bits}")
    raise_violations(weight_violations(artifact) + membrane_violations(artifact), "violation(s) for Lava")
    k0 = artifact.input_activations(k0)
    period = artifact.latency_steps + gap
    F, T, d = artifact.schedule, artifact.window_steps, artifact.synaptic_delay
    source = SpikeSource(data=input_raster(artifact, k0, period))
    net = LavaNetwork(inputs=k0, source=source, synapses=[], neurons=[], recorders=[], period=period, n_samples=len(k0))
    s_out = source.s_out
    for n, layer in enumerate(artifact.layers):
        synapse = _synapse(layer.weight, artifact.weight_bits, d)
        neuron = TTFSNeuron(shape=(layer.n_out,), beta=layer.bias, sigma=layer.slope, integration_start=F[n] + d,
                            steps_in=T[n], steps_out=0 if layer.readout else layer.window_steps, period=period,
                            n_samples=len(k0), name=layer.name)
        s_out.connect(synapse.s_in)
        synapse.a_out.connect(neuron.a_in)
        net.synapses.append(synapse)
        net.neurons.append(neuron)
        if not layer.readout:
            recorder = SpikeRecorder(shape=(layer.n_out,), period=period, n_samples=len(k0))
            neuron.s_out.connect(recorder.a_in)
            net.recorders.append(recorder)
        s_out = neuron.s_out
    return net

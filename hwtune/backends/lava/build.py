"""Artifact -> a network of Lava processes running B samples back to back.

Timing (lava-nc 0.10.0, checked in its source and in tests/test_lava.py): Lava's time_step
starts at 1 and our step is t = time_step - 1. The input RingBuffer sends column
(time_step - 1) of its data, so column t holds the input spikes of step t. Dense and Sparse send
on step t + 1 what they accumulated on step t (one step of synaptic delay, d = 1); for d > 1
DelayDense / DelaySparse with delay d - 1 do the same d steps later. Sample b occupies steps
[b P, (b + 1) P) with P = latency + gap, so a step there is the artifact's step plus b P.

Synapses (docs/design.md, "Lava mapping"): a dense layer on unpooled inputs is a ``Dense``
process; a convolution, or any layer after a sum pooling, is a ``Sparse`` process holding the
layer's explicit synapse matrix (hwtune.connectivity: pooling folded in, the convolution unrolled).
Both are Lava's bit-accurate models (``PyDenseModelBitAcc``, ``PySparseModelBitAcc``, picked by
``select_tag="fixed_pt"``), fed weights q << (9 - b) with weight_exp = -(9 - b) so that a_in is
sum q exactly (numerics.lava_weights), and sign_mode MIXED (Lava would infer INHIBITORY for an
all-negative matrix, counting a CSR's implicit zeros, and clip -256).
"""
# No "from __future__ import annotations": when compiling, Lava executes every module of this
# directory outside its package, where dataclasses cannot resolve string annotations.

import typing as ty
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.io.source import RingBuffer as SpikeSource
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import SignMode

from hwtune import numerics
from hwtune.artifact import Artifact, ArtifactError, membrane_violations, raise_violations, weight_violations
from hwtune.backends.lava.process import TTFSNeuron
from hwtune.connectivity import layer_matrix
from hwtune.layers import OpError

#: Registers of the process model are int32 (see models.py).
MAX_MEMBRANE_BITS = 32


@dataclass
class LavaNetwork:
    """The processes of one run: input source, synapses, neurons (hidden then read-out); inputs:
    the validated k0 (B, n_in); records: the files the neurons write at the end of the run."""

    inputs: np.ndarray
    source: SpikeSource
    synapses: list
    neurons: ty.List[TTFSNeuron]
    records: ty.List[Path]
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


def _synapse(matrix, bits: int, delay: int):
    """Dense (array) or Sparse (CSR) process whose a_out is matrix @ spikes exactly (numerics.lava_weights)."""
    shift = numerics.LAVA_WEIGHT_RANGE_BITS - bits
    kwargs = dict(weight_exp=-shift, num_weight_bits=bits, sign_mode=SignMode.MIXED)
    if sp.issparse(matrix):
        weights = matrix.astype(np.int32, copy=True)
        weights.data = numerics.lava_weights(weights.data, bits)[0].astype(np.int32)
        return Sparse(weights=weights, **kwargs) if delay == 1 else DelaySparse(weights=weights, delays=delay - 1,
                                                                                 **kwargs)
    weights = numerics.lava_weights(matrix, bits)[0]
    return Dense(weights=weights, **kwargs) if delay == 1 else DelayDense(weights=weights, delays=delay - 1, **kwargs)


def build_network(artifact: Artifact, k0, record_dir: Path, gap: int = 2) -> LavaNetwork:
    """Lava processes for ``artifact`` fed with input activations ``k0`` (B, n_in); the neurons write
    what they observe into ``record_dir``.

    Refuses (ArtifactError) weights outside ``weight_bits``, more than 8 weight bits (Lava's
    synapses), registers that could overflow, or membrane_bits > 32.
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
    net = LavaNetwork(inputs=k0, source=source, synapses=[], neurons=[], records=[], period=period,
                      n_samples=len(k0))
    s_out = source.s_out
    for n, layer in enumerate(artifact.layers):
        try:
            matrix = layer_matrix(layer)
        except OpError as e:
            raise ArtifactError(str(e)) from None
        synapse = _synapse(matrix, artifact.weight_bits, d)
        positions = layer.n_out // layer.synapse.out_channels
        record = Path(record_dir) / f"layer{n}.npz"
        neuron = TTFSNeuron(shape=(layer.n_out,), beta=np.repeat(layer.bias, positions),
                            sigma=None if layer.readout else np.repeat(layer.slope, positions),
                            integration_start=F[n] + d, steps_in=T[n], steps_out=0 if layer.readout else layer.window_steps,
                            period=period, n_samples=len(k0), record_path=str(record), name=layer.name)
        s_out.connect(synapse.s_in)
        synapse.a_out.connect(neuron.a_in)
        net.synapses.append(synapse)
        net.neurons.append(neuron)
        net.records.append(record)
        s_out = neuron.s_out
    return net

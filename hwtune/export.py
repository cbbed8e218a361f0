"""Quantized TTFSNet -> deployable integer :class:`~hwtune.artifact.Artifact` for a target.

Every layer becomes a dense integer layer over the previous spiking layer's neurons: the
integer map k_{n-1} -> V_n of the net (convolution, sum pooling, flatten) is read off by
probing :meth:`TTFSNet.segment_potential` with unit vectors, so the exported integers are
those of the torch forward by construction. Checks against the target (bits, steps, fan-in,
neuron count, membrane width) run here and name the layer and neuron at fault.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hwtune.artifact import Artifact, ArtifactError, ArtifactLayer, check
from hwtune.provenance import provenance
from hwtune.target import TargetSpec
from hwtune.ttfs.net import TTFSNet

#: Largest dense weight matrix (entries) an exported layer may have.
MAX_DENSE_ENTRIES = 50_000_000


def _input_shape(net: TTFSNet, n: int) -> tuple[int, ...]:
    """Shape of one sample of the activations feeding segment n (the previous spiking layer)."""
    if n == 0:
        return net.input_shape
    with torch.no_grad():
        k = torch.zeros((1, *net.input_shape), dtype=torch.float64)
        for m in range(n):
            k = net.segment_potential(m, k)[0]
    return tuple(k.shape[1:])


@torch.no_grad()
def _dense_layer(net: TTFSNet, n: int, name: str) -> ArtifactLayer:
    shape = _input_shape(net, n)
    n_in = math.prod(shape)
    zero = torch.zeros((1, *shape), dtype=torch.float64)
    V0, unit, sigma = net.segment_potential(n, zero)
    n_out = V0[0].numel()
    if n_in * n_out > MAX_DENSE_ENTRIES:
        raise ArtifactError(f"layer {name!r}: {n_out} x {n_in} dense weights exceed the exporter's "
                            f"{MAX_DENSE_ENTRIES} entries; use a smaller convolutional net")
    columns = []
    for start in range(0, n_in, 1024):
        basis = torch.eye(n_in, dtype=torch.float64)[start:start + 1024].reshape(-1, *shape)
        columns.append((net.segment_potential(n, basis)[0] - V0).reshape(len(basis), n_out))
    weight = torch.cat(columns).T.contiguous()
    steps_in = net.quant.steps[n]
    positions = n_out // len(unit)
    bias = V0.reshape(n_out) / steps_in
    readout = n == net.n_hidden
    return ArtifactLayer(
        name=name,
        weight=weight.round().to(torch.int64).numpy(),
        bias=bias.round().to(torch.int64).numpy(),
        slope=None if readout else np.repeat(sigma.round().to(torch.int64).numpy(), positions),
        window_steps=None if readout else net.quant.steps[n + 1],
        readout=readout,
        logit_scale=float(unit[0]) if readout else 1.0,
    )


def to_artifact(net: TTFSNet, target: TargetSpec, source: str = "") -> Artifact:
    """Integer artifact of a quantized net for ``target`` (checked; raises ArtifactError)."""
    if net.quant is None or net.quant.weights is None:
        raise ArtifactError("export needs integer weights and a time grid: run `hwtune quantize` first")
    if any(layer["kind"] == "maxpool" for layer in net.arch):
        raise ArtifactError("max pooling has no single-spike integer mapping on these targets; use average pooling")
    target.check_bits(net.quant.weights.bits, "export: ")
    target.check_steps(net.quant.steps, "export: ")
    if net.quant.delay != target.synaptic_delay:
        raise ArtifactError(f"model was quantized for synaptic delay {net.quant.delay}, target {target.name} has "
                            f"{target.synaptic_delay}: re-run quantize with --target {target.name}")
    names = [f"{layer['kind']}{i}" for i, layer in enumerate(l for l in net.arch if l["kind"] in ("dense", "conv"))]
    layers = [_dense_layer(net, n, name) for n, name in enumerate(names)]
    artifact = Artifact(layers=layers, input_shape=net.input_shape, input_steps=net.quant.steps[0],
                        synaptic_delay=target.synaptic_delay, weight_bits=net.quant.weights.bits,
                        membrane_bits=target.membrane_bits, overflow=target.overflow,
                        meta={"target": target.to_dict(), "source": source, "dataset": net.info.get("dataset", {}),
                              "provenance": provenance(None)})
    check(artifact)
    return artifact

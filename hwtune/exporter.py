"""Quantized TTFSNet -> deployable integer :class:`~hwtune.artifact.Artifact` for a target.

Each segment of the net (pooling/flatten, then a dense or conv synapse) becomes one artifact
layer with the same kinds: average pooling as sum pooling (its 1/area is in the synapse's scale,
hence in beta and sigma), flatten, dense or conv2d with the integer kernel itself. The integers
(q, beta, sigma, logit unit) are read from :meth:`TTFSNet.integer_parameters`, the numbers the
torch forward uses; tests check the result against probing :meth:`TTFSNet.segment_potential`
with unit vectors (the oracle) and against the torch forward on data. Register checks against
the target (bits, steps, delay, membrane width) run here and name the layer and neuron at fault;
chip resources are hwtune.mapper's.
"""
from __future__ import annotations

import numpy as np
import torch

from hwtune.artifact import Artifact, ArtifactError, ArtifactLayer, check
from hwtune.architectures import output_shapes
from hwtune.layers import is_weighted, kind_of
from hwtune.provenance import provenance
from hwtune.target import TargetSpec
from hwtune.ttfs.net import TTFSNet


def _integers(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().round().to(torch.int64).numpy()


@torch.no_grad()
def _layer(net: TTFSNet, n: int, in_shape: tuple) -> ArtifactLayer:
    ops, spec = net.segment(n)
    q, beta, sigma, unit = net.integer_parameters(n, net.segment_gain(n))
    refused = [op.not_in_artifact for op in ops if op.not_in_artifact]
    if refused:
        raise ArtifactError(refused[0])
    shape = in_shape
    for op in ops:
        shape = op.output_shape(shape)
    kind = kind_of(spec)
    synapse = kind.from_spec(spec, _integers(q), shape)
    readout = n == net.n_hidden
    return ArtifactLayer(name=f"{kind.name_prefix}{n}", synapse=synapse, ops=ops, in_shape=in_shape,
                         bias=_integers(beta), slope=None if readout else _integers(sigma),
                         window_steps=None if readout else net.quant.steps[n + 1], readout=readout,
                         logit_scale=float(unit[0]) if readout else 1.0)


def to_artifact(net: TTFSNet, target: TargetSpec, source: str = "") -> Artifact:
    """Integer artifact of a quantized net for ``target`` (register checks; raises ArtifactError)."""
    if net.quant is None or net.quant.weights is None:
        raise ArtifactError("export needs integer weights and a time grid: run `hwtune quantize` first")
    target.check_bits(net.quant.weights.bits, "export: ")
    target.check_steps(net.quant.steps, "export: ")
    if net.quant.delay != target.synaptic_delay:
        raise ArtifactError(f"model was quantized for synaptic delay {net.quant.delay}, target {target.name} has "
                            f"{target.synaptic_delay}: re-run quantize with --target {target.name}")
    shapes = [tuple(net.input_shape), *output_shapes(net.arch, net.input_shape)]
    weighted = [i for i, layer in enumerate(net.arch) if is_weighted(layer)]
    layer_inputs = [shapes[0]] + [shapes[i + 1] for i in weighted[:-1]]
    layers = [_layer(net, n, layer_inputs[n]) for n in range(len(weighted))]
    artifact = Artifact(layers=layers, input_shape=net.input_shape, input_steps=net.quant.steps[0],
                        synaptic_delay=target.synaptic_delay, weight_bits=net.quant.weights.bits,
                        membrane_bits=target.membrane_bits, overflow=target.overflow,
                        meta={"target": target.to_dict(), "source": source, "dataset": net.info.get("dataset", {}),
                              "provenance": provenance(None)})
    check(artifact)
    return artifact

"""Quantized TTFSNet -> deployable integer :class:`~hwtune.artifact.Artifact` for a target.

Each layer of the net's graph (hwtune.graph) becomes one artifact layer with the same kinds: each
branch a stage (average pooling as sum pooling, whose 1/area is in the synapse's scale, hence in
beta and sigma; flatten; a concat with the powers of two of its sources' grids; a dense, conv2d or
identity synapse with the integer kernel itself, scaled by the branch's power of two), a layer of
several branches a join (its kind's ``join``). The integers (q, beta, sigma, logit unit) are read
from :meth:`TTFSNet.integer_parameters`, the numbers the torch forward uses; tests check the
result against probing :meth:`TTFSNet.layer_potential` with unit vectors (the oracle) and against
the torch forward on data. Register checks against the target (bits, steps, delay, membrane width)
run here and name the layer and neuron at fault; chip resources are hwtune.mapper's.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hwtune.artifact import INPUT, Artifact, ArtifactError, ArtifactLayer, check
from hwtune.graph import layer_names
from hwtune.layers import OpError, Stage, kind_of
from hwtune.layers.identity import Identity
from hwtune.provenance import provenance
from hwtune.target import TargetSpec
from hwtune.ttfs.net import TTFSNet


def _integers(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().round().to(torch.int64).numpy()


def _stage(net: TTFSNet, branch, q: torch.Tensor, shift: int, scales: list[float]) -> Stage:
    ops = tuple(branch.ops)
    refused = [op.not_in_artifact for op in ops if op.not_in_artifact]
    if refused:
        raise ArtifactError(refused[0])
    if len(branch.sources) > 1:
        ops = (ops[0].with_shifts([round(math.log2(r)) for r in scales]), *ops[1:])
    if branch.synapse is None:
        synapse = Identity(weight=_integers(q), in_shape=branch.shape)
    else:
        synapse = kind_of(net.synapse_spec(branch.synapse)).from_spec(net.synapse_spec(branch.synapse), _integers(q),
                                                                      branch.shape)
    return Stage(synapse, ops, branch.in_shapes, shift)


@torch.no_grad()
def _layer(net: TTFSNet, n: int, names: list[str]) -> ArtifactLayer:
    layer = net.layers[n]
    integers = net.integer_parameters(n)
    stages = [_stage(net, branch, *parts) for branch, parts in zip(layer.branches, integers.branches)]
    if len(stages) == 1:
        fields = dict(synapse=stages[0].synapse, ops=stages[0].ops, in_shapes=stages[0].in_shapes, shift=stages[0].shift)
    else:
        fields = dict(synapse=kind_of(net.arch[layer.node]).join(stages), in_shapes=tuple(
            shape for stage in stages for shape in stage.in_shapes))
    readout = n == net.n_hidden
    try:
        return ArtifactLayer(name=names[n + 1], inputs=tuple(names[p] for p in layer.sources),
                             bias=_integers(integers.beta), slope=None if readout else _integers(integers.sigma),
                             window_steps=None if readout else net.quant.steps[n + 1], readout=readout,
                             logit_scale=float(integers.unit[0]) if readout else 1.0, **fields)
    except OpError as e:
        raise ArtifactError(f"layer {names[n + 1]!r}: {e}") from None


def to_artifact(net: TTFSNet, target: TargetSpec, source: str = "") -> Artifact:
    """Integer artifact of a quantized net for ``target`` (register checks; raises ArtifactError)."""
    if net.quant is None or net.quant.weights is None:
        raise ArtifactError("export needs integer weights and a time grid: run `hwtune quantize` first")
    target.check_bits(net.quant.weights.bits, "export: ")
    target.check_steps(net.quant.steps, "export: ")
    if net.quant.delay != target.synaptic_delay:
        raise ArtifactError(f"model was quantized for synaptic delay {net.quant.delay}, target {target.name} has "
                            f"{target.synaptic_delay}: re-run quantize with --target {target.name}")
    names = [INPUT] + layer_names(net.layers)
    layers = [_layer(net, n, names) for n in range(len(net.layers))]
    artifact = Artifact(layers=layers, input_shape=net.input_shape, input_steps=net.quant.steps[0],
                        synaptic_delay=target.synaptic_delay, weight_bits=net.quant.weights.bits,
                        membrane_bits=target.membrane_bits, overflow=target.overflow,
                        meta={"target": target.to_dict(), "source": source, "dataset": net.info.get("dataset", {}),
                              "provenance": provenance(None)})
    check(artifact)
    return artifact

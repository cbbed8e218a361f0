"""An artifact layer as one explicit synapse matrix (scipy CSR): what Lava's Sparse process takes.

Rows are the layer's neurons, columns the previous layer's, both channel-major (C, H, W)
flattened, so that ``matrix @ k.ravel()`` equals ``q * ops(k)`` (hwtune.layers): the sum poolings
before the synapse are folded in (every presynaptic neuron of a pooled block gets the block's
weights), a convolution is unrolled position by position. Each synapse kind builds its own
(``matrix``; the unrolling: hwtune.layers.conv2d.conv_csr).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from hwtune.layers import OpError


def folded_pool(layer) -> int:
    """Side p of the one block sum that the sum poolings before the layer's synapse amount to: the
    product of their kernels (1: none). Nested block sums with stride = kernel are one block sum,
    and their floor modes agree: floor(floor(h / a) / b) = floor(h / (a b))."""
    return math.prod(op.folded_pool for op in layer.ops)


def layer_matrix(layer) -> np.ndarray | sp.csr_matrix:
    """The synapse matrix (n_out, n_in) of an ArtifactLayer: a dense array for a dense synapse on
    unpooled inputs (Lava Dense), else a CSR (Lava Sparse)."""
    if layer.synapse.shares_kernels and not all(op.keeps_map for op in layer.ops):
        raise OpError(f"layer {layer.name!r}: a {layer.synapse.kind} synapse takes a (C, H, W) map")
    return layer.synapse.matrix(layer.in_shape, folded_pool(layer))

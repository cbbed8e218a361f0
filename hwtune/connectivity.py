"""An artifact layer as one explicit synapse matrix (scipy CSR): what Lava's Sparse process takes.

Rows are the layer's neurons, columns the previous layer's, both channel-major (C, H, W)
flattened, so that ``matrix @ k.ravel()`` equals ``q * ops(k)`` (hwtune.layers): a sum pooling
before the synapse is folded in (every presynaptic neuron of a pooled block gets the block's
weights), a convolution is unrolled position by position. Each synapse kind builds its own
(``matrix``; the unrolling: hwtune.layers.conv2d.conv_csr).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hwtune.layers import Flatten, OpError, SumPool


def layer_matrix(layer) -> np.ndarray | sp.csr_matrix:
    """The synapse matrix (n_out, n_in) of an ArtifactLayer: a dense array for a dense synapse on
    unpooled inputs (Lava Dense), else a CSR (Lava Sparse). At most one sum pooling is supported."""
    pools = [op for op in layer.ops if isinstance(op, SumPool)]
    if len(pools) > 1:
        raise OpError(f"layer {layer.name!r}: more than one sum pooling before a synapse")
    pool = pools[0].kernel if pools else 1
    if layer.synapse.shares_kernels and (pools and not isinstance(layer.ops[-1], SumPool)
                                         or any(isinstance(op, Flatten) for op in layer.ops)):
        raise OpError(f"layer {layer.name!r}: a {layer.synapse.kind} synapse takes a (C, H, W) map")
    return layer.synapse.matrix(layer.in_shape, pool)

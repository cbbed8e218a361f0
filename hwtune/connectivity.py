"""An artifact layer as one explicit synapse matrix (scipy CSR): what Lava's Sparse process takes.

Rows are the layer's neurons, columns the previous layer's, both channel-major (C, H, W)
flattened, so that ``matrix @ k.ravel()`` equals ``q * ops(k)`` (hwtune.layers): a sum pooling
before the synapse is folded in (every presynaptic neuron of a pooled block gets the block's
weights), a convolution is unrolled position by position. Built vectorised (no Python loop over
output positions) and directly in canonical CSR order.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hwtune.layers import Conv2d, Dense, Flatten, OpError, SumPool


def _axis_taps(n_in: int, k: int, stride: int, pad: int, pool: int):
    """One spatial axis: for each output o and slot j = (tap, pool offset) in [0, k * pool), the
    input coordinate (before pooling), the kernel tap and whether it is valid.

    Returns n_out, idx (n_out, k*pool), tap (k*pool,), valid (n_out, k*pool); for fixed o the
    valid input coordinates increase with j.
    """
    n_pooled = n_in // pool
    n_out = (n_pooled + 2 * pad - k) // stride + 1
    o = np.arange(n_out)[:, None, None]
    tap = np.arange(k)[None, :, None]
    off = np.arange(pool)[None, None, :]
    pooled = o * stride - pad + tap                     # coordinate on the pooled grid
    valid = np.broadcast_to((pooled >= 0) & (pooled < n_pooled), (n_out, k, pool)).reshape(n_out, k * pool)
    idx = (pooled * pool + off).reshape(n_out, k * pool)
    return n_out, idx, np.repeat(np.arange(k), pool), valid


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for c in counts, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(counts.sum(), dtype=np.int64) - np.repeat(ends - counts, counts)


def conv_csr(q: np.ndarray, in_shape: tuple, stride: int = 1, padding: int = 0, pool: int = 1) -> sp.csr_matrix:
    """CSR (C_out*H_o*W_o, C_in*H*W) of [sum pool (kernel = stride = ``pool``, floor)] then the
    cross-correlation with q (C_out, C_in, K, K), stride, zero padding (torch conv2d). Zero weights
    are left out."""
    q = np.asarray(q)
    cout, cin, kh, kw = q.shape
    _, h, w = in_shape
    ho, yy, ty, vy = _axis_taps(h, kh, stride, padding, pool)
    wo, xx, tx, vx = _axis_taps(w, kw, stride, padding, pool)
    valid = vy[:, None, :, None] & vx[None, :, None, :]                        # (Ho, Wo, Ly, Lx)
    pix = np.broadcast_to(yy[:, None, :, None] * w + xx[None, :, None, :], valid.shape)[valid]
    tap = np.broadcast_to((ty[:, None] * kw + tx[None, :])[None, None], valid.shape)[valid]
    per_pos = valid.reshape(ho * wo, -1).sum(axis=1)                           # taps per output position
    start = np.concatenate([[0], np.cumsum(per_pos)])[:-1]
    # one output row (c_out, pos) holds, for c_in = 0..C_in-1, the taps of pos (columns ascending)
    counts = np.repeat(per_pos, cin)
    ci_idx = np.repeat(np.tile(np.arange(cin), ho * wo), counts)
    s_idx = np.repeat(np.repeat(start, cin), counts) + _ragged_arange(counts)
    cols = ci_idx * (h * w) + pix[s_idx]
    vals = q.reshape(cout, cin, kh * kw)[:, ci_idx, tap[s_idx]]                # (C_out, nnz per channel)
    indptr = np.concatenate([[0], np.cumsum(np.tile(cin * per_pos, cout))])
    idx_dtype = np.int32 if max(indptr[-1], cin * h * w) < 2 ** 31 else np.int64
    m = sp.csr_matrix((vals.ravel().astype(np.int64), np.tile(cols, cout).astype(idx_dtype),
                       indptr.astype(idx_dtype)), shape=(cout * ho * wo, cin * h * w))
    m.has_sorted_indices = True
    m.eliminate_zeros()
    return m


def layer_matrix(layer) -> np.ndarray | sp.csr_matrix:
    """The synapse matrix (n_out, n_in) of an ArtifactLayer: a dense array for a dense synapse on
    unpooled inputs (Lava Dense), else a CSR (Lava Sparse). At most one sum pooling is supported."""
    pools = [op for op in layer.ops if isinstance(op, SumPool)]
    if len(pools) > 1:
        raise OpError(f"layer {layer.name!r}: more than one sum pooling before a synapse")
    pool = pools[0].kernel if pools else 1
    syn = layer.synapse
    if isinstance(syn, Dense):
        if pool == 1:
            return syn.weight
        c, h, w = layer.in_shape
        kernel = syn.weight.reshape(syn.out_channels, c, h // pool, w // pool)   # over the pooled map
        return conv_csr(kernel, layer.in_shape, pool=pool)
    if pools and not isinstance(layer.ops[-1], SumPool) or any(isinstance(op, Flatten) for op in layer.ops):
        raise OpError(f"layer {layer.name!r}: a conv2d synapse takes a (C, H, W) map")
    assert isinstance(syn, Conv2d)
    return conv_csr(syn.weight, layer.in_shape, syn.stride, syn.padding, pool)

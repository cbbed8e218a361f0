"""Window choice from data: layer maxima (conversion) and quantiles (quantize, latency reduction).

Activations are in tau_c (float nets). A window L_n >= largest activation keeps the B1 net
exactly equal to its ReLU twin; a quantile window saturates the rare larger activations.
"""
from __future__ import annotations

import torch

from hwtune import progress

#: Histogram bins per layer for quantile estimates: the estimate is within max / QUANTILE_BINS.
QUANTILE_BINS = 65536


def _float_activations(net, x: torch.Tensor, batch_size: int | None):
    """Yield per-batch lists of hidden activations of the float (unsaturated, noiseless) net,
    in batches of bounded memory (hwtune.training.eval_batch)."""
    from hwtune.training import eval_batch

    batch_size = batch_size or eval_batch(net.geometry())
    with net.conditions(quant=None, saturate=False, noise=None), torch.no_grad():
        for i in progress.bar(range(0, len(x), batch_size), desc="fit windows", unit="batch"):
            yield net.activations(x[i:i + batch_size])[1:]


def layer_maxima(net, x: torch.Tensor, batch_size: int | None = None) -> list[float]:
    """X_n = largest activation of each hidden layer over the data (tau_c)."""
    maxima = [0.0] * net.n_hidden
    for acts in _float_activations(net, x, batch_size):
        maxima = [max(m, float(a.max())) for m, a in zip(maxima, acts)]
    return maxima


def layer_quantiles(net, x: torch.Tensor, q: float, batch_size: int | None = None) -> list[float]:
    """q-quantile of the positive activations of each hidden layer (tau_c); 0 for a dead layer.

    Streams the data twice in batches (memory independent of the data size): once for the layer
    maxima X_n, once for a histogram of QUANTILE_BINS equal bins on (0, X_n]. The result is the
    upper edge of the bin holding the quantile, so it lies in [true quantile, true quantile +
    X_n / QUANTILE_BINS]; q = 1 gives X_n exactly.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    maxima = layer_maxima(net, x, batch_size)
    if q == 1:
        return maxima
    hists = [torch.zeros(QUANTILE_BINS, dtype=torch.float64) for _ in maxima]
    for acts in _float_activations(net, x, batch_size):
        for hist, a, top in zip(hists, acts, maxima):
            positive = a[a > 0].double().cpu()
            if top > 0 and positive.numel():
                hist += torch.histc(positive, QUANTILE_BINS, 0.0, top)
    result = []
    for hist, top in zip(hists, maxima):
        total = float(hist.sum())
        if total == 0:
            result.append(0.0)
            continue
        index = int(torch.searchsorted(hist.cumsum(0), torch.tensor(q * total, dtype=torch.float64)))
        result.append(top * min(index + 1, QUANTILE_BINS) / QUANTILE_BINS)
    return result


def set_windows(net, lengths: list[float], floor: float = 1e-3) -> None:
    """Set hidden windows L_n (tau_c), at least ``floor`` so a dead layer keeps a valid window; on a
    time grid, the windows of joined layers are then aligned (TTFSNet.align_windows)."""
    if len(lengths) != net.n_hidden:
        raise ValueError(f"need {net.n_hidden} window lengths, got {len(lengths)}")
    net.windows.copy_(torch.tensor([max(float(v), floor) for v in lengths], dtype=torch.float64))
    if net.quant is not None:
        net.align_windows()


def fit_windows(net, x: torch.Tensor, q: float) -> None:
    """Fit every hidden window to the ``q``-quantile of its layer's activations on ``x``
    (:func:`layer_quantiles`) and make the forward saturate: with windows shorter than the largest
    activation, a spike due before its window opens fires at the window start (k = T_n)."""
    set_windows(net, layer_quantiles(net, x, q))
    net.saturate = True

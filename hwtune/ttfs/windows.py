"""Window choice from data: layer maxima (conversion) and quantiles (quantize, latency reduction).

Activations are in tau_c (float nets). A window L_n >= largest activation keeps the B1 net
exactly equal to its ReLU twin; a quantile window saturates the rare larger activations.
"""
from __future__ import annotations

import torch

from hwtune import progress

#: Histogram bins per layer for quantile estimates: the estimate is within max / QUANTILE_BINS.
QUANTILE_BINS = 65536
#: Scales f that search_windows tries for each hidden window (L_n <- f L_n): 2^(1/2), 1, 2^(-1/2), ..., 1/4.
SEARCH_SCALES = tuple(2.0 ** (-i / 2) for i in range(-1, 5))


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


@torch.no_grad()
def search_windows(net, x: torch.Tensor, y: torch.Tensor, scales=SEARCH_SCALES) -> list[float]:
    """Coordinate search of the hidden windows of a net on a time grid, for its time resolution
    Delta_n = L_n / T_n against saturation above L_n: in topological order, window n becomes f L_n
    for the f of ``scales`` with the lowest mean cross-entropy of the net's logits on (x, y), the
    other windows held (ties keep the earlier f). Returns the f chosen for each window."""
    import torch.nn.functional as F

    from hwtune.training import logits_of

    if net.quant is None:
        raise ValueError("search_windows needs a net on a time grid (a float net's windows do not round)")
    chosen = []
    for n in range(net.n_hidden):
        base, losses = net.windows.clone(), []
        for f in scales:
            lengths = base.tolist()
            lengths[n] *= f
            set_windows(net, lengths)
            losses.append(float(F.cross_entropy(logits_of(net, x), y)))
        best = min(range(len(scales)), key=lambda i: losses[i])
        lengths = base.tolist()
        lengths[n] *= scales[best]
        set_windows(net, lengths)
        chosen.append(scales[best])
    return chosen

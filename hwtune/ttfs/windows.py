"""Window choice from data: layer maxima (conversion) and quantiles (latency reduction).

Activations are in tau_c (float nets). A window L_n >= largest activation keeps the B1 net
exactly equal to its ReLU twin; a quantile window saturates the rare larger activations.
"""
from __future__ import annotations

import torch

#: Largest number of positive activations per layer kept for a quantile estimate.
_QUANTILE_SAMPLE = 2_000_000


def _float_activations(net, x: torch.Tensor, batch_size: int):
    """Yield per-batch lists of hidden activations of the float (unsaturated, noiseless) net."""
    saved = (net.quant, net.saturate, net.noise)
    net.quant, net.saturate, net.noise = None, False, None
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                yield net.activations(x[i:i + batch_size])[1:]
    finally:
        net.quant, net.saturate, net.noise = saved


def layer_maxima(net, x: torch.Tensor, batch_size: int = 1024) -> list[float]:
    """X_n = largest activation of each hidden layer over the data (tau_c)."""
    maxima = [0.0] * net.n_hidden
    for acts in _float_activations(net, x, batch_size):
        maxima = [max(m, float(a.max())) for m, a in zip(maxima, acts)]
    return maxima


def layer_quantiles(net, x: torch.Tensor, q: float, batch_size: int = 1024, seed: int = 0) -> list[float]:
    """q-quantile of the positive activations of each hidden layer (tau_c); 0 for a dead layer."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    positives: list[list[torch.Tensor]] = [[] for _ in range(net.n_hidden)]
    for acts in _float_activations(net, x, batch_size):
        for store, a in zip(positives, acts):
            store.append(a[a > 0].double())
    gen = torch.Generator().manual_seed(seed)
    result = []
    for store in positives:
        values = torch.cat(store)
        if values.numel() == 0:
            result.append(0.0)
            continue
        if values.numel() > _QUANTILE_SAMPLE:
            values = values[torch.randperm(values.numel(), generator=gen)[:_QUANTILE_SAMPLE]]
        result.append(float(torch.quantile(values, q)) if q < 1 else float(values.max()))
    return result


def set_windows(net, lengths: list[float], floor: float = 1e-3) -> None:
    """Set hidden windows L_n (tau_c), at least ``floor`` so a dead layer keeps a valid window."""
    if len(lengths) != net.n_hidden:
        raise ValueError(f"need {net.n_hidden} window lengths, got {len(lengths)}")
    net.windows.copy_(torch.tensor([max(float(v), floor) for v in lengths], dtype=torch.float64))

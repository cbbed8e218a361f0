"""Pure functions of the B1 TTFS neuron (Stanojevic et al. 2024), units of tau_c = 1.

A hidden layer n with window [t_min, t_max] maps presynaptic activations
x_j = t_min - t_j (0 for silent inputs) to the closed-form spike time

    t_i = t_max - (sum_j W_ij x_j + b_i),   silent (t_i := t_max) when t_i >= t_max,

so x_i = t_max - t_i = ReLU(W x + b) and d t_i / d W_ij = -x_j: the exact gradient of the
spike time is the ReLU network's gradient (no surrogate).
"""
from __future__ import annotations

import torch


def spike_time(z: torch.Tensor, t_min: float, t_max: float, saturate: bool = False) -> torch.Tensor:
    """Spike time t = t_max - z of a neuron with pre-activation z; t_max (= silent) if z <= 0.

    ``saturate``: a spike due before the window opens (z > t_max - t_min) fires at t_min
    (hardware-faithful clipping used by the latency pass; gradient 0 when clipped).
    """
    t = t_max - torch.relu(z)   # == clamp(t_max - z, max=t_max), with ReLU's gradient 0 at z = 0 (not clamp's 1)
    if saturate:
        t = torch.clamp(t, min=t_min)
    return t


def activation(t: torch.Tensor, t_ref: float) -> torch.Tensor:
    """Presynaptic activation x = t_ref - t for spike times t, with t_ref = t_max of their window."""
    return t_ref - t


def silent_to_inf(t: torch.Tensor, t_max: float) -> torch.Tensor:
    """Spike times with silent neurons (t >= t_max) shown as +inf."""
    return t.masked_fill(t >= t_max, float("inf"))


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, surrogate):
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Return ``value`` exactly in the forward pass, with the gradient of ``surrogate``."""
    return _StraightThrough.apply(value, surrogate)

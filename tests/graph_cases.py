"""Graph nets for tests: random weights on an architecture graph, and the exactness checks every
graph kind must pass (TTFS == ReLU twin in float64; quantized torch == emulator fast == stepped)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hwtune.backends.emulator import emulate
from hwtune.exporter import to_artifact
from hwtune.numerics import WeightFormat
from hwtune.target import load_target
from hwtune.ttfs import QuantSpec
from hwtune.ttfs.arch import ReLUNet
from hwtune.ttfs.convert import from_relu
from hwtune.workflow import encoded_inputs


def relu_net(arch: list[dict], input_shape: tuple, seed: int) -> ReLUNet:
    """The ReLU twin of ``arch`` in float64 with Glorot weights and small random biases."""
    torch.manual_seed(seed)
    net = ReLUNet(arch, input_shape).double()
    with torch.no_grad():
        for syn in net.synapses:
            torch.nn.init.xavier_uniform_(syn.weight)
            syn.bias.uniform_(-0.05, 0.05)
    return net.eval()


def pixels(input_shape: tuple, n: int, seed: int) -> torch.Tensor:
    """Random pixel intensities in [0, 1], a third of them 0 (silent inputs)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *input_shape), generator=g, dtype=torch.float64)
    return x * (torch.rand(x.shape, generator=g, dtype=torch.float64) > 1 / 3)


def assert_ttfs_equals_relu(relu: ReLUNet, x: torch.Tensor) -> torch.nn.Module:
    """The converted TTFS net gives the ReLU net's logits and gradients (float64, 1e-9); returns it."""
    net = from_relu(relu, x)
    assert torch.allclose(net(x), relu(x), atol=1e-9, rtol=0)
    y = torch.randint(0, relu(x).shape[1], (len(x),))
    for model in (net, relu):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for a, b in zip(net.synapses, relu.synapses):
        assert torch.allclose(a.weight.grad, b.weight.grad, atol=1e-9, rtol=0)
        assert torch.allclose(a.bias.grad, b.bias.grad, atol=1e-9, rtol=0)
    return net


def quantized_artifact(net, bits: int, delay: int, seed: int, scale: str = "per-layer"):
    """``net`` on a random time grid (3-10 steps per window) with ``bits``-bit weights and synaptic delay
    ``delay``, exported for the emulator target with that delay."""
    rng = np.random.default_rng(seed)
    steps = [int(t) for t in rng.integers(3, 11, net.n_hidden + 1)]
    net.set_quant(QuantSpec(steps, WeightFormat(bits=bits, scale=scale), delay=delay))
    target = dataclasses.replace(load_target("emulator"), synaptic_delay=delay)
    return to_artifact(net, target)


def assert_torch_equals_emulator(net, artifact, x: torch.Tensor, stepped: int = 8):
    """Every activation and logit of the quantized torch net equals the emulator's fast mode, and the
    stepped mode equals the fast one on the first ``stepped`` samples; returns the fast result."""
    k0 = encoded_inputs(x, artifact.input_steps)
    fast = emulate(artifact, k0, mode="fast")
    with torch.no_grad():
        logits, acts = net.forward_with_activations(x)
    for n, (k_torch, k_emu) in enumerate(zip(acts, fast.activations)):
        assert np.array_equal(k_torch.reshape(len(x), -1).numpy().astype(np.int64), k_emu), f"activations of node {n}"
    assert np.array_equal(np.round(logits.double().numpy() / artifact.layers[-1].logit_scale).astype(np.int64),
                          fast.logits)
    step = emulate(artifact, k0[:stepped], mode="stepped")
    for a, b in zip(step.activations + step.potentials, fast.activations + fast.potentials):
        assert np.array_equal(a, b[:stepped])
    assert sum(int((k > 0).sum()) for k in fast.activations[1:]) > 0, "the net never spikes: a vacuous case"
    return fast

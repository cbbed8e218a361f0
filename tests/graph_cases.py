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


def random_graph(seed: int) -> tuple[list[dict], tuple, set]:
    """A seeded random architecture graph on a (C, 8, 8) sample: a 3x3 stem, two or three blocks drawn from
    residual blocks (identity skip, or a 1x1 projection, stride 1 or 2), inception-style concatenations
    (of the block's input and, on the sample's grid, the sample itself), sum pooling and plain convolutions,
    then global pooling or a flatten, dense layers (some with an identity skip) and a dense read-out.
    Returns (arch, input_shape, the features it has: block and tail names)."""
    rng = np.random.default_rng(seed)
    c_in = int(rng.integers(1, 3))
    width = int(rng.integers(3, 6))
    arch = [{"kind": "conv2d", "in": c_in, "out": width, "kernel": 3, "padding": 1, "name": "stem"}]
    prev, channels, side, is_layer, features = "stem", width, 8, True, set()

    def node(spec: dict, name: str, inputs: list) -> str:
        arch.append({**spec, "name": name, "inputs": inputs})
        return name

    for b in range(int(rng.integers(2, 4))):
        choices = ["identity", "projection", "conv"] + (["sumpool"] if side >= 4 else []) + \
                  (["concat"] if is_layer else [])
        block, name = str(rng.choice(choices)), f"b{b}"
        features.add(block)
        if block in ("identity", "projection"):
            stride = 2 if block == "projection" and side >= 4 and rng.random() < 0.5 else 1
            out = channels if block == "identity" else int(rng.integers(3, 7))
            conv = {"kind": "conv2d", "kernel": 3, "padding": 1}
            node({**conv, "in": channels, "out": out, "stride": stride}, f"{name}.conv1", [prev])
            node({**conv, "in": out, "out": out}, f"{name}.conv2", [f"{name}.conv1"])
            skip = prev
            features |= set() if is_layer else {"skip of a shape op"}
            if block == "projection":
                skip = node({"kind": "conv2d", "in": channels, "out": out, "kernel": 1, "stride": stride},
                            f"{name}.proj", [prev])
            prev = node({"kind": "add"}, name, [f"{name}.conv2", skip])
            features |= {"stride 2"} if stride == 2 else set()
            channels, side, is_layer = out, side // stride, True
        elif block == "concat":
            a = int(rng.integers(2, 5))
            node({"kind": "conv2d", "in": channels, "out": a, "kernel": 3, "padding": 1}, f"{name}.a", [prev])
            joined = [f"{name}.a", prev] + (["input"] if side == 8 and rng.random() < 0.5 else [])
            prev = node({"kind": "concat"}, name, joined)
            features |= {"concat of the sample"} if "input" in joined else set()
            channels, is_layer = a + channels + (c_in if "input" in joined else 0), False
        elif block == "sumpool":
            prev = node({"kind": "sumpool", "kernel": 2}, name, [prev])
            side, is_layer = side // 2, False
        else:
            out = int(rng.integers(3, 7))
            prev = node({"kind": "conv2d", "in": channels, "out": out, "kernel": 3, "padding": 1}, name, [prev])
            channels, is_layer = out, True
    if rng.random() < 0.5:
        features.add("globalpool")
        node({"kind": "globalpool"}, "pool", [prev])
        n = channels
    else:
        n = channels * side * side
    prev = node({"kind": "flatten"}, "flat", ["pool" if "globalpool" in features else prev])
    tail = str(rng.choice(["dense", "dense-skip", "none"]))
    if tail != "none":
        features.add(tail)
        hidden = int(rng.integers(4, 9))
        prev = node({"kind": "dense", "in": n, "out": hidden}, "fc1", [prev])
        if tail == "dense-skip":
            node({"kind": "dense", "in": hidden, "out": hidden}, "fc2", [prev])
            prev = node({"kind": "add"}, "fc", ["fc2", prev])
        n = hidden
    node({"kind": "dense", "in": n, "out": 3}, "out", [prev])
    return arch, (c_in, 8, 8), features

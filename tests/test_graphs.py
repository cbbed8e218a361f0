"""Random architecture graphs (tests/graph_cases.random_graph): residual skips (identity, 1x1
projection, stride 1 or 2, skips of pooled or concatenated maps), concatenation (of the sample too),
global and sum pooling, conv and dense stages, dense skips; 2-8 weight bits, per-layer and per-channel
scales, synaptic delays 1-3. Each is checked along independent paths: the TTFS net against its ReLU
twin (float64), the quantized torch net against the emulator's fast and stepped modes, and Lava's
stock processes against the emulator, spike for spike."""
import pytest
import torch

from graph_cases import assert_torch_equals_emulator, assert_ttfs_equals_relu, pixels, quantized_artifact, random_graph, \
    relu_net
from hwtune import graph

#: Seeds of graphs whose every hidden layer spikes on the test samples after quantization (a silent
#: layer would compare zeros with zeros); the i-th case has 2 + i % 7 weight bits and delay 1 + i % 3.
SEEDS = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21, 23, 24, 27, 29, 30, 35]
CASES = [(seed, 2 + i % 7, 1 + i % 3, "per-channel" if i % 4 == 3 else "per-layer") for i, seed in enumerate(SEEDS)]
#: Graphs Lava runs (slow, ~neurons x steps: two small ones, two samples each), together every kind and
#: skip but the identity of a layer's own map, which resnet-small runs on Lava (tests/test_resnet_preset.py).
LAVA_SEEDS = [21, 35]


def graph_net(seed: int, n: int):
    """(TTFS net checked against its ReLU twin, samples, features) of random graph ``seed``; biases are
    shifted up by 0.05 so that deep layers of the small random nets still spike."""
    arch, shape, features = random_graph(seed)
    relu = relu_net(arch, shape, seed=seed)
    with torch.no_grad():
        for syn in relu.synapses:
            syn.bias.add_(0.05)
    x = pixels(shape, n, seed=seed)
    return assert_ttfs_equals_relu(relu, x), x, features


def test_the_cases_cover_every_kind_bits_and_delay():
    features = set().union(*(random_graph(seed)[2] for seed in SEEDS))
    assert features == {"identity", "projection", "stride 2", "concat", "concat of the sample", "sumpool", "conv",
                        "globalpool", "dense", "dense-skip", "skip of a shape op"}
    assert {bits for _, bits, _, _ in CASES} == set(range(2, 9)) and {d for _, _, d, _ in CASES} == {1, 2, 3}
    lava = set().union(*(random_graph(seed)[2] for seed in LAVA_SEEDS))
    assert {"projection", "stride 2", "skip of a shape op", "concat", "concat of the sample", "globalpool", "sumpool",
            "dense-skip"} <= lava


def test_the_generator_is_seeded_and_every_case_is_a_graph():
    assert random_graph(3) == random_graph(3) and random_graph(3) != random_graph(4)
    for seed in SEEDS:
        arch, shape, _ = random_graph(seed)
        g = graph.read(arch, shape)
        assert g.layers[-1].shape == (3,)                                      # the read-out: three classes
        assert any(len(layer.sources) > 1 for layer in g.layers), seed         # a join: not a chain


@pytest.mark.parametrize("seed, bits, delay, scale", CASES)
def test_a_random_graph_is_exact_from_relu_to_the_emulator(seed, bits, delay, scale):
    net, x, _ = graph_net(seed, 32)
    artifact = quantized_artifact(net, bits, delay, seed=seed, scale=scale)
    fast = assert_torch_equals_emulator(net, artifact, x)
    silent = [layer.name for layer, k in zip(artifact.layers, fast.activations[1:]) if not (k > 0).any()]
    assert not silent, f"layers {silent} never spike: a vacuous comparison"


@pytest.mark.parametrize("seed", LAVA_SEEDS)
def test_lava_runs_random_graphs_spike_for_spike(seed):
    pytest.importorskip("lava")
    from test_lava import assert_lava_matches_emulator
    from hwtune.workflow import encoded_inputs
    net, x, _ = graph_net(seed, 2)
    artifact = quantized_artifact(net, 4, 1 + seed % 3, seed=seed)
    _, emu = assert_lava_matches_emulator(artifact, encoded_inputs(x, artifact.input_steps))
    assert all((k > 0).any() for k in emu.activations[1:])

"""The concat kind (hwtune.layers.concat): channel concatenation of layers on different time grids,
exact from the ReLU twin through the quantized torch net and the emulator to Lava's stock processes."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from graph_cases import assert_torch_equals_emulator, assert_ttfs_equals_relu, pixels, quantized_artifact, relu_net
from hwtune.artifact import Artifact
from hwtune.layers import ArchError
from hwtune.layers.concat import Concat
from hwtune.ttfs.convert import from_relu, parse_module


def inception_arch(with_input: bool = False) -> list[dict]:
    """stem -> two branches (3x3 conv, 1x1 conv) -> concat (and the sample) -> 3x3 conv -> pool -> dense."""
    joined = ["a", "b"] + (["input"] if with_input else [])
    channels = 3 + 5 + (1 if with_input else 0)
    return [{"kind": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1, "name": "stem"},
            {"kind": "conv2d", "in": 4, "out": 3, "kernel": 3, "padding": 1, "name": "a", "inputs": ["stem"]},
            {"kind": "conv2d", "in": 4, "out": 5, "kernel": 1, "name": "b", "inputs": ["stem"]},
            {"kind": "concat", "name": "cat", "inputs": joined},
            {"kind": "conv2d", "in": channels, "out": 4, "kernel": 3, "padding": 1, "name": "mix"},
            {"kind": "sumpool", "kernel": 4}, {"kind": "flatten"}, {"kind": "dense", "in": 16, "out": 3}]


@pytest.mark.parametrize("with_input", [False, True])
def test_a_concat_ttfs_net_is_its_relu_twin(with_input):
    relu = relu_net(inception_arch(with_input), (1, 8, 8), seed=1)
    net = assert_ttfs_equals_relu(relu, pixels((1, 8, 8), 16, seed=1))
    mix = net.layers[3]
    assert mix.sources == ((2, 3, 0) if with_input else (2, 3)) and isinstance(mix.branches[0].ops[0], Concat)


@pytest.mark.parametrize("with_input", [False, True])
@pytest.mark.parametrize("bits, delay", [(2, 1), (5, 2), (8, 3)])
def test_concat_torch_equals_emulator_fast_and_stepped(with_input, bits, delay):
    x = pixels((1, 8, 8), 48, seed=2)
    net = assert_ttfs_equals_relu(relu_net(inception_arch(with_input), (1, 8, 8), seed=bits), x)
    artifact = quantized_artifact(net, bits, delay, seed=bits * delay)
    mix = artifact.layers[3]
    concat = mix.ops[0]
    assert isinstance(concat, Concat) and len(concat.shifts) == mix.arity == (3 if with_input else 2)
    assert min(concat.shifts) == 0
    deltas = [net._delta(p) for p in net.layers[3].sources]
    assert [2.0 ** s for s in concat.shifts] == pytest.approx([d / min(deltas) for d in deltas], rel=1e-9)
    assert_torch_equals_emulator(net, artifact, x)


def test_a_concat_round_trips_and_its_matrix_is_its_rule(tmp_path):
    x = pixels((1, 8, 8), 8, seed=3)
    net = assert_ttfs_equals_relu(relu_net(inception_arch(True), (1, 8, 8), seed=3), x)
    artifact = quantized_artifact(net, 4, 1, seed=3)
    artifact.save(tmp_path / "a")
    again = Artifact.load(tmp_path / "a")
    assert again.to_json()["layers"] == artifact.to_json()["layers"]
    layer, rng = again.layers[3], np.random.default_rng(0)
    ks = [rng.integers(0, 6, (5, n)) for n in layer.stage.n_in]
    explicit = np.concatenate(ks, axis=1) @ np.asarray(layer.stage.matrix().todense()).T
    assert np.array_equal(layer.potential(ks, 0).reshape(5, -1), explicit)
    fan = layer.fan_out()
    columns = np.diff(layer.stage.matrix().tocsc().indptr)
    assert np.array_equal(np.concatenate(fan), columns)


def test_convert_traces_a_concat_and_refuses_another_dimension():
    class Two(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dim = dim
            self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 3, 1)
            self.fc = nn.Linear(5 * 64, 3)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=self.dim)
            return self.fc(y.flatten(1))

    model = Two(1).double().eval()
    arch, _ = parse_module(model)
    assert [d["kind"] for d in arch] == ["conv2d", "conv2d", "concat", "flatten", "dense"]
    x = pixels((1, 8, 8), 8, seed=4)
    assert torch.allclose(from_relu(model, x)(x), model(x), atol=1e-9, rtol=0)
    with pytest.raises(ArchError, match=r"only concatenation along the channels \(dim=1\)"):
        parse_module(Two(2).double().eval())


def test_lava_runs_a_concat_net_spike_for_spike():
    pytest.importorskip("lava")
    from test_lava import assert_lava_matches_emulator
    from hwtune.workflow import encoded_inputs
    x = pixels((1, 8, 8), 6, seed=5)
    net = assert_ttfs_equals_relu(relu_net(inception_arch(True), (1, 8, 8), seed=5), x)
    artifact = quantized_artifact(net, 4, 2, seed=5)
    assert_lava_matches_emulator(artifact, encoded_inputs(x, artifact.input_steps))

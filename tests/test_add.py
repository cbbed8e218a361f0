"""The add kind (hwtune.layers.add): residual joins with identity and projection skips, exact from the
ReLU twin through the quantized torch net and the emulator to Lava's stock processes."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from graph_cases import assert_torch_equals_emulator, assert_ttfs_equals_relu, pixels, quantized_artifact, relu_net
from hwtune.artifact import Artifact
from hwtune.layers import ArchError
from hwtune.layers.add import Add
from hwtune.layers.identity import Identity
from hwtune.ttfs.convert import parse_module


def residual_arch(projection: bool, stride: int = 1, c: int = 4) -> list[dict]:
    """stem conv -> block (conv1, conv2 + identity or 1x1 projection of the stem) -> pool -> dense."""
    side = 8 // stride // 2
    arch = [{"kind": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1, "name": "stem"},
            {"kind": "conv2d", "in": 4, "out": c, "kernel": 3, "padding": 1, "stride": stride, "name": "b.conv1"},
            {"kind": "conv2d", "in": c, "out": c, "kernel": 3, "padding": 1, "name": "b.conv2"}]
    skip = "stem"
    if projection:
        arch.append({"kind": "conv2d", "in": 4, "out": c, "kernel": 1, "stride": stride, "name": "b.proj",
                     "inputs": ["stem"]})
        skip = "b.proj"
    return arch + [{"kind": "add", "name": "b", "inputs": ["b.conv2", skip]}, {"kind": "sumpool", "kernel": 2},
                   {"kind": "flatten"}, {"kind": "dense", "in": c * side * side, "out": 3}]


CASES = [(False, 1, 4), (True, 1, 6), (True, 2, 5)]


@pytest.mark.parametrize("projection, stride, c", CASES)
def test_a_residual_ttfs_net_is_its_relu_twin(projection, stride, c):
    relu = relu_net(residual_arch(projection, stride, c), (1, 8, 8), seed=c)
    net = assert_ttfs_equals_relu(relu, pixels((1, 8, 8), 16, seed=1))
    add = net.layers[2]
    assert [b.synapse is None for b in add.branches] == [False, not projection]      # identity or projection
    assert add.sources == (2, 1)                                                    # conv1 layer, the stem


@pytest.mark.parametrize("projection, stride, c", CASES)
@pytest.mark.parametrize("bits, delay", [(2, 1), (4, 2), (8, 3)])
def test_residual_torch_equals_emulator_fast_and_stepped(projection, stride, c, bits, delay):
    x = pixels((1, 8, 8), 48, seed=2)
    net = assert_ttfs_equals_relu(relu_net(residual_arch(projection, stride, c), (1, 8, 8), seed=bits), x)
    artifact = quantized_artifact(net, bits, delay, seed=bits + delay)
    add = artifact.layers[2]
    assert isinstance(add.synapse, Add) and add.inputs == ("b.conv1", "stem")
    assert isinstance(add.synapse.branches[1].synapse, Identity) != projection
    shifts = [b.shift for b in add.synapse.branches]
    assert min(shifts) == 0                                                         # the finest unit is the layer's
    timing = artifact.timing
    assert timing.arrival_delay(2, 1) == timing.window_steps[2] + delay            # the skip waits for conv1's window
    assert timing.arrival_delay(2, 2) == 0
    assert_torch_equals_emulator(net, artifact, x)


def test_aligned_windows_make_branch_units_powers_of_two_and_stay_put():
    x = pixels((1, 8, 8), 16, seed=3)
    net = assert_ttfs_equals_relu(relu_net(residual_arch(True), (1, 8, 8), seed=3), x)
    quantized_artifact(net, 4, 1, seed=5)
    integers = net.integer_parameters(2)
    units = [float(q) for q in (net._branch_scale(b, 4, "cpu")[1][0] * net._branch_grid(b)[0]
                                for b in net.layers[2].branches)]
    ratio = units[0] / units[1]
    assert abs(np.log2(ratio) - round(np.log2(ratio))) < 1e-12
    assert sorted(shift for _, shift, _ in integers.branches)[0] == 0
    before = net.windows.clone()
    net.align_windows()
    assert torch.equal(before, net.windows)


def test_an_add_layer_round_trips_and_its_matrix_is_its_rule(tmp_path):
    x = pixels((1, 8, 8), 8, seed=4)
    net = assert_ttfs_equals_relu(relu_net(residual_arch(True, 2, 5), (1, 8, 8), seed=4), x)
    artifact = quantized_artifact(net, 4, 2, seed=4)
    artifact.save(tmp_path / "a")
    again = Artifact.load(tmp_path / "a")
    assert again.to_json()["layers"] == artifact.to_json()["layers"]
    assert all(np.array_equal(a, b) for a, b in zip(again.arrays().values(), artifact.arrays().values()))
    layer, rng = again.layers[2], np.random.default_rng(0)
    ks = [rng.integers(0, 8, (6, n)) for n in layer.stage.n_in]
    explicit = np.concatenate(ks, axis=1) @ np.asarray(layer.stage.matrix().todense()).T
    assert np.array_equal(layer.potential(ks, 0).reshape(6, -1), explicit)


def test_convert_traces_a_residual_module_with_batch_norm():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn0 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.conv1, self.bn1 = nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(6)
            self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
            self.proj = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
            self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(24, 3)

        def forward(self, x):
            x = torch.relu(self.bn0(self.stem(x)))
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            out = torch.relu(out + self.proj(x))
            return self.fc(torch.flatten(self.pool(out), 1))

    torch.manual_seed(0)
    model = Block().double()
    for bn in (model.bn0, model.bn1, model.bn2, model.proj[1]):
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    model.eval()
    arch, params = parse_module(model)
    assert [d["kind"] for d in arch] == ["conv2d", "conv2d", "conv2d", "conv2d", "add", "sumpool", "flatten", "dense"]
    assert len(params) == 5
    x = pixels((1, 8, 8), 16, seed=6)
    from hwtune.ttfs.convert import from_relu
    net = from_relu(model, x)
    assert torch.allclose(net(x), model(x), atol=1e-9, rtol=0)


def test_a_pre_activation_both_added_and_used_after_its_relu_is_refused():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1), nn.Linear(128, 3)

        def forward(self, x):
            y = self.a(x)
            z = torch.relu(y + self.b(x)) + torch.relu(y)
            return self.fc(torch.relu(z).flatten(1))

    with pytest.raises(ArchError, match=r"'a': its output is added before its ReLU and used after it"):
        parse_module(Both())


def test_lava_runs_a_residual_net_spike_for_spike():
    pytest.importorskip("lava")
    from test_lava import assert_lava_matches_emulator
    from hwtune.workflow import encoded_inputs
    x = pixels((1, 8, 8), 6, seed=7)
    net = assert_ttfs_equals_relu(relu_net(residual_arch(True, 2, 5), (1, 8, 8), seed=7), x)
    artifact = quantized_artifact(net, 4, 2, seed=7)
    lava, _ = assert_lava_matches_emulator(artifact, encoded_inputs(x, artifact.input_steps))
    assert "lava.proc.sparse.models.PyDelaySparseModel" in " ".join(lava.process_models) or \
        any("Delay" in m for m in lava.process_models)

"""The globalpool kind (hwtune.layers.globalpool): global average pooling, as torch's
AdaptiveAvgPool2d(1), exact from the ReLU twin through the quantized torch net and the emulator to Lava."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from graph_cases import assert_torch_equals_emulator, assert_ttfs_equals_relu, pixels, quantized_artifact, relu_net
from hwtune.layers import ArchError
from hwtune.layers.globalpool import GlobalPool
from hwtune.ttfs.convert import from_relu, parse_module

ARCH = [{"kind": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1},
        {"kind": "conv2d", "in": 4, "out": 6, "kernel": 3, "stride": 2},
        {"kind": "globalpool"}, {"kind": "flatten"}, {"kind": "dense", "in": 6, "out": 3}]


def test_global_pooling_sums_the_map_and_counts_it_in_the_bounds():
    pool = GlobalPool()
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(pool.apply(x), x.sum(axis=(2, 3), keepdims=True))
    assert pool.output_shape((3, 4, 5)) == (3, 1, 1) and pool.gain_on((3, 4, 5)) == 20
    m = pool.matrix((3, 4, 5))
    assert np.array_equal(m @ x[0].reshape(-1), x[0].sum(axis=(1, 2)))
    assert np.array_equal(pool.fan_out_in(np.array([1, 2, 3]).reshape(3, 1, 1), (3, 4, 5))[0],
                          np.broadcast_to(np.array([1, 2, 3]).reshape(3, 1, 1), (3, 4, 5)))


@pytest.mark.parametrize("bits, delay", [(3, 1), (8, 2)])
def test_a_globally_pooled_net_is_exact_from_relu_to_emulator(bits, delay):
    x = pixels((1, 8, 8), 48, seed=bits)
    net = assert_ttfs_equals_relu(relu_net(ARCH, (1, 8, 8), seed=bits), x)
    artifact = quantized_artifact(net, bits, delay, seed=bits)
    readout = artifact.layers[-1]
    assert [op.kind for op in readout.ops] == ["globalpool", "flatten"] and readout.stage.gain == 3 * 3
    assert_torch_equals_emulator(net, artifact, x)


def test_convert_reads_adaptive_average_pooling_and_refuses_other_sizes():
    def model(size):
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(size), nn.Flatten(),
                             nn.Linear(4 * (1 if size == 1 else 4), 3)).double().eval()
    arch, _ = parse_module(model(1))
    assert [d["kind"] for d in arch] == ["conv2d", "globalpool", "flatten", "dense"]
    x = pixels((1, 8, 8), 8, seed=1)
    m = model(1)
    assert torch.allclose(from_relu(m, x)(x), m(x), atol=1e-9, rtol=0)
    with pytest.raises(ArchError, match="only output_size 1 \\(global average pooling\\)"):
        parse_module(model(2))


def test_lava_runs_a_globally_pooled_net_spike_for_spike():
    pytest.importorskip("lava")
    from test_lava import assert_lava_matches_emulator
    from hwtune.workflow import encoded_inputs
    x = pixels((1, 8, 8), 6, seed=3)
    net = assert_ttfs_equals_relu(relu_net(ARCH, (1, 8, 8), seed=3), x)
    artifact = quantized_artifact(net, 4, 1, seed=3)
    assert_lava_matches_emulator(artifact, encoded_inputs(x, artifact.input_steps))

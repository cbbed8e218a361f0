"""Grouped / depthwise convolution (nn.Conv2d(groups=g)) through every layer-kind duty: integer apply
== torch, explicit connectivity == apply, fan-out == the matrix's columns, JSON round trip; and a
depthwise-separable net on digits: convert == the ReLU net, quantized torch == emulator on every
test image (tests/test_lava.py: Lava == emulator on 20)."""
import copy
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

from hwtune.backends.emulator import emulate
from hwtune.exporter import to_artifact
from hwtune.layers import Conv2d, Stage, SumPool, conv2d, synapse_from_json
from hwtune.mapper import map_layers
from hwtune.numerics import WeightFormat
from hwtune.target import load_target
from hwtune.ttfs import QuantSpec
from hwtune.ttfs.convert import from_relu
from hwtune.workflow import encoded_inputs


@pytest.mark.parametrize("c_in, c_out, g, k, s, p", [(4, 4, 4, 3, 1, 1), (6, 4, 2, 3, 2, 0), (3, 6, 3, 2, 1, 1)])
def test_grouped_conv_equals_torch_and_its_matrix(c_in, c_out, g, k, s, p, monkeypatch):
    rng = np.random.default_rng(c_in + 10 * g)
    x = rng.integers(0, 9, (3, c_in, 7, 6))
    q = rng.integers(-8, 8, (c_out, c_in // g, k, k)) * (rng.random((c_out, c_in // g, k, k)) < 0.8)
    conv = Conv2d(weight=q, in_shape=(c_in, 7, 6), stride=s, padding=p, groups=g)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(q).double(), stride=s,
                                     padding=p, groups=g).numpy().astype(np.int64)
    monkeypatch.setattr(conv2d, "IM2COL_BYTES", 2 * q[0].size * g * ref[0, 0].size * 8)   # 2 samples per chunk
    for dtype in (np.float32, np.float64, np.int64):
        assert np.array_equal(conv.apply(x, dtype), ref)
    per_position = np.broadcast_to(q[..., None, None], q.shape + ref.shape[2:])
    assert np.array_equal(conv.apply(x, np.float64, per_position), ref)
    matrix = conv.matrix()
    assert np.array_equal(matrix @ x.reshape(3, -1).T, ref.reshape(3, -1).T)
    assert np.array_equal(conv.fan_out().reshape(-1), (matrix != 0).sum(axis=0).A1)
    again = synapse_from_json(conv.to_json(), lambda: q)
    assert again.groups == g and np.array_equal(again.apply(x, np.int64), ref)
    layer = {"kind": "conv2d", "in": c_in, "out": c_out, "kernel": k, "padding": p, "stride": s, "groups": g}
    module = Conv2d.torch_synapse(layer, dtype=torch.float64)
    unshared = Conv2d.torch_apply(module, torch.from_numpy(x).double(), torch.from_numpy(per_position.copy()).double(),
                                  None)
    assert np.array_equal(unshared.round().numpy().astype(np.int64), ref)


def depthwise_separable() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.ReLU(),      # depthwise
                         nn.Conv2d(4, 8, 1), nn.ReLU(),                            # pointwise
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).double()


def depthwise_case(digits):
    """(trained ReLU net, its TTFS twin, the quantized twin's artifact, test inputs k0)."""
    torch.manual_seed(0)
    relu = depthwise_separable()
    opt = torch.optim.Adam(relu.parameters(), lr=1e-2)
    x, y = digits.train_x.double(), digits.train_y
    for _ in range(3):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(relu(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    net = from_relu(relu, x)
    twin = copy.deepcopy(net)
    net.saturate = True
    net.set_quant(QuantSpec([16, 16, 16, 16], WeightFormat(bits=6, scale="per-channel")))
    artifact = to_artifact(net, load_target("emulator"))
    return relu, twin, net, artifact, encoded_inputs(digits.test_x, artifact.input_steps)


def test_depthwise_separable_net_on_digits(digits):
    relu, twin, net, artifact, k0 = depthwise_case(digits)
    test_x = digits.test_x.double()
    with torch.no_grad():
        relu_out, ttfs_out = relu(test_x), twin(test_x)
    assert twin.arch[1]["groups"] == 4
    assert torch.allclose(ttfs_out, relu_out, rtol=1e-9, atol=1e-9)          # convert == ReLU net
    assert (relu_out.argmax(1) == digits.test_y).double().mean() > 0.5
    assert artifact.layers[1].synapse.groups == 4 and artifact.layers[1].weight.shape == (4, 1, 3, 3)
    fast = emulate(artifact, k0, mode="fast")
    with torch.no_grad():
        logits, acts = net.forward_with_activations(test_x)
    for k_torch, k_emu in zip(acts, fast.activations):                         # every test image
        assert np.array_equal(k_torch.reshape(len(test_x), -1).numpy().astype(np.int64), k_emu)
    assert np.array_equal(fast.predictions, logits.argmax(1).numpy())
    stepped = emulate(artifact, k0[:20], mode="stepped")
    assert np.array_equal(stepped.logits, fast.logits[:20])
    # mapper, on a chip that stores kernels (Loihi 2's stock build holds explicit synapses instead): 1 x 3 x 3
    sharing = dataclasses.replace(load_target("loihi2").chip, conv_weight_sharing=True)
    depthwise = map_layers(artifact, sharing)[1]
    assert depthwise.synapses == artifact.layers[1].stage.matrix().nnz
    assert depthwise.cores == 1 and depthwise.memory_bits == 4 * (1 * 3 * 3) * 6          # not 4 x (4 x 3 x 3) x 6


def test_a_saved_depthwise_model_loads_with_its_integers(digits, tmp_path):
    """io.save / io.load of the quantized depthwise-separable net: the stored integers come back,
    and the reloaded net exports the same artifact (every weight, bias and slope) and logits."""
    from hwtune import io
    _, _, net, artifact, k0 = depthwise_case(digits)
    io.save(net, tmp_path / "m")
    again = to_artifact(io.load(tmp_path / "m"), load_target("emulator"))
    assert again.layers[1].synapse.groups == 4
    for a, b in zip(artifact.layers, again.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert (a.slope is None and b.slope is None) or np.array_equal(a.slope, b.slope)
    assert np.array_equal(emulate(again, k0).logits, emulate(artifact, k0).logits)


def test_a_core_of_a_grouped_conv_reads_only_its_groups_inputs():
    """By hand: C_in = C_out = 6, g = 3 (2 input and 2 output channels per group), K = 3, on 8 x 8:
    output 6 x 6. A tile of p positions spans th x tw >= p outputs, (t - 1) + 3 inputs per side; a
    block of n consecutive neurons (explicit synapses) spans whole-width rows, maybe of two channels.
    test_the_inputs_a_core_reads_are_never_underestimated checks random convolutions by brute force."""
    conv = Conv2d(weight=np.ones((6, 2, 3, 3), dtype=np.int64), in_shape=(6, 8, 8), groups=3)
    n_in = 6 * 8 * 8
    assert conv.tile_inputs(4, 1, n_in) == 1 * 2 * 4 * 4               # 2 x 2 tile, one group: 2 input channels
    assert conv.tile_inputs(4, 2, n_in) == 2 * 2 * 4 * 4               # 2 channels may straddle 2 groups
    assert conv.tile_inputs(4, 6, n_in) == 3 * 2 * 4 * 4               # every group: all 6 input channels
    assert conv.tile_inputs(5, 1, n_in) == 2 * 5 * 4                   # 3 x 2 tile (2 x 2 would hold only 4)
    pooled = Stage(conv, (SumPool(2),), ((6, 16, 16),))
    assert pooled.tile_inputs(4, 1) == 2 * 8 * 8                       # a pooling 2 before it doubles each side
    assert conv.core_inputs(1, n_in) == 1 * 2 * 3 * 8                  # one neuron: 3 input rows (full width)
    assert conv.core_inputs(10, n_in) == 2 * 8 * 8                     # 3 output rows, or 4 over 2 channels: 2 + 6 rows
    assert conv.core_inputs(36, n_in) == 2 * 2 * 8 * 8                 # one channel's map may span 2 channels
    assert conv.core_inputs(200, n_in) == n_in                         # every channel


def test_a_depthwise_conv_meets_an_axon_limit_with_fewer_channels_per_core():
    """One output position of 8 depthwise channels (3 x 3 kernels) reads 8 x 9 = 72 inputs, more than a
    limit of 40: no number of positions fits, 4 channels of one position (36 inputs) do."""
    from hwtune.artifact import ArtifactLayer
    from hwtune.mapper import _shared_kernel_layer
    layer = ArtifactLayer(name="dw", synapse=Conv2d(weight=np.ones((8, 1, 3, 3), dtype=np.int64), in_shape=(8, 6, 6),
                                                     padding=1, groups=8),
                          bias=np.zeros(8, dtype=np.int64), slope=np.ones(8, dtype=np.int64), window_steps=4,
                          readout=False)
    chip = dataclasses.replace(load_target("loihi2").chip, conv_weight_sharing=True, max_axons_per_core=40)
    m = _shared_kernel_layer(layer, chip, 4)
    assert (m.axons_per_core, m.neurons_per_core, m.cores) == (36, 4, 2 * 36)
    tall = Conv2d(weight=np.ones((1, 1, 3, 3), dtype=np.int64), in_shape=(1, 14, 5))       # output 12 x 3
    assert tall.tile_inputs(36, 1, 70) == 14 * 5                    # the whole map: 12 x 3 outputs, all inputs


@pytest.mark.parametrize("seed", range(6))
def test_the_inputs_a_core_reads_are_never_underestimated(seed):
    """Against the explicit matrix (distinct columns of the rows a core holds), for random convolutions
    (groups, stride, padding, a pooling before them): core_inputs for a block of n consecutive neurons
    starting anywhere, tile_inputs for every placement of its th x tw tile of c consecutive channels."""
    rng = np.random.default_rng(seed)
    for _ in range(8):
        c = int(rng.integers(1, 4))
        g = int(rng.choice([1, c]))
        c_out, pool, k = g * int(rng.integers(1, 3)), int(rng.choice([1, 2])), int(rng.integers(1, 4))
        s, p = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        h, w = int(rng.integers(max(1, k - 2 * p), 7)), int(rng.integers(max(1, k - 2 * p), 7))
        conv = Conv2d(weight=np.ones((c_out, c // g, k, k), dtype=np.int64), in_shape=(c, h, w), stride=s, padding=p,
                      groups=g)
        stage = Stage(conv, (SumPool(pool),) if pool > 1 else (), ((c, h * pool, w * pool),))
        matrix, n_in = sp.csr_matrix(stage.matrix()), c * h * w * pool ** 2
        reads = lambda rows: len(np.unique(matrix[rows].indices))          # noqa: E731
        _, h_o, w_o = conv.output_shape()
        for n in range(1, matrix.shape[0] + 1):
            assert max(reads(list(range(i, i + n))) for i in range(matrix.shape[0] - n + 1)) <= \
                stage.core_inputs(n) <= n_in
        for positions in range(1, h_o * w_o + 1):
            th = min(h_o, max(1, int(np.sqrt(positions))))
            tw = min(w_o, -(-positions // th))
            th = min(h_o, -(-positions // tw))
            assert th * tw >= positions
            for channels in range(1, c_out + 1):
                worst = max(reads([ch * h_o * w_o + y * w_o + x for ch in range(c0, c0 + channels)
                                   for y in range(y0, y0 + th) for x in range(x0, x0 + tw)])
                            for c0 in range(c_out - channels + 1) for y0 in range(h_o - th + 1)
                            for x0 in range(w_o - tw + 1))
                assert worst <= stage.tile_inputs(positions, channels) <= n_in

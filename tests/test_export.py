"""Export: the artifact computes exactly what the quantized torch net computes (dense and conv, with
stride, padding, average pooling, per-layer and per-channel scales), the exported kernels equal the
probed integer map of the net (the oracle), and the target's register limits are enforced."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from hwtune.artifact import Artifact, ArtifactError
from hwtune.backends.emulator import emulate
from hwtune.configs import TrainConfig
from hwtune.exporter import to_artifact
from hwtune.numerics import WeightFormat
from hwtune.target import load_target
from hwtune.training import train
from hwtune.ttfs import QuantSpec, TTFSNet, preset
from hwtune.workflow import encoded_inputs

STRIDED = [{"kind": "conv", "in": 1, "out": 4, "kernel": 3, "padding": 1, "stride": 1},
           {"kind": "avgpool", "kernel": 2},
           {"kind": "conv", "in": 4, "out": 6, "kernel": 3, "padding": 0, "stride": 2},
           {"kind": "flatten"}, {"kind": "dense", "in": 6, "out": 10}]


@pytest.fixture(scope="module")
def conv_net(digits):
    torch.manual_seed(1)
    net = TTFSNet(preset("vgg-small", (1, 8, 8), 10), (1, 8, 8))
    train(net, digits.train_x, digits.train_y, TrainConfig(epochs=4, lr=3e-3, batch_size=32), seed=1)
    net.windows.copy_(torch.tensor([4.0, 4.0, 4.0], dtype=torch.float64))
    net.saturate = True
    return net


def probed_matrix(net: TTFSNet, n: int, in_shape: tuple) -> np.ndarray:
    """The oracle: the integer map k_{n-1} -> V_n of the torch net, read off with unit vectors."""
    n_in = int(np.prod(in_shape))
    source = net.layers[n].sources[0]
    with torch.no_grad():
        zero = net.layer_potential(n, {source: torch.zeros((1, *in_shape), dtype=torch.float64)})[0].reshape(-1)
        basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
        V = net.layer_potential(n, {source: basis})[0].reshape(n_in, -1) - zero
    return V.T.round().to(torch.int64).numpy(), zero.numpy()


@pytest.mark.parametrize("arch, scale", [("vgg-small", "per-layer"), ("vgg-small", "per-channel"),
                                         ("strided", "per-channel")])
def test_exported_kernels_equal_the_probed_integer_map(conv_net, arch, scale):
    torch.manual_seed(2)
    net = conv_net if arch == "vgg-small" else TTFSNet(STRIDED, (1, 8, 8), windows=[3.0, 3.0])
    net.saturate = True
    steps = [12, 10, 9, 8] if arch == "vgg-small" else [12, 10, 9]
    net.set_quant(QuantSpec(steps, WeightFormat(bits=4, scale=scale)))
    artifact = to_artifact(net, load_target("emulator"))
    for n, layer in enumerate(artifact.layers):
        m, zero = probed_matrix(net, n, layer.in_shape)
        exported = layer.stage.matrix()
        exported = exported.toarray() if hasattr(exported, "toarray") else exported
        assert np.array_equal(exported, m), layer.name
        per_neuron_bias = np.repeat(layer.bias, layer.n_out // len(layer.bias)) * steps[n]
        assert np.array_equal(per_neuron_bias, np.round(zero).astype(np.int64)), layer.name


@pytest.mark.parametrize("bits,scale", [(8, "per-layer"), (4, "per-channel"), (3, "per-layer")])
def test_conv_artifact_equals_torch_integers(conv_net, digits, bits, scale):
    net = conv_net
    net.set_quant(QuantSpec([12, 10, 9, 8], WeightFormat(bits=bits, scale=scale)))
    artifact = to_artifact(net, load_target("emulator"))
    assert [type(l.synapse).__name__ for l in artifact.layers] == ["Conv2d", "Conv2d", "Dense", "Dense"]
    x = digits.test_x
    k0 = encoded_inputs(x, artifact.input_steps)
    fast = emulate(artifact, k0, mode="fast")
    with torch.no_grad():
        logits, acts = net.forward_with_activations(x)
    for k_torch, k_emu in zip(acts, fast.activations):
        assert np.array_equal(k_torch.reshape(len(x), -1).numpy().astype(np.int64), k_emu)
    assert np.array_equal(np.round(logits.double().numpy() / artifact.layers[-1].logit_scale).astype(np.int64),
                          fast.logits)
    assert np.array_equal(fast.predictions, logits.argmax(1).numpy())
    stepped = emulate(artifact, k0[:40], mode="stepped")
    assert np.array_equal(stepped.logits, fast.logits[:40])
    assert (fast.predictions == digits.test_y.numpy()).mean() > 0.5


def test_export_refuses_what_the_target_cannot_run(conv_net):
    net = conv_net
    net.set_quant(None)
    with pytest.raises(ArtifactError, match="run `hwtune quantize` first"):
        to_artifact(net, load_target("loihi2"))
    net.set_quant(QuantSpec([12, 10, 9, 8], WeightFormat(bits=8), delay=1))
    emulator = load_target("emulator")
    tiny = replace(emulator, state=replace(emulator.state, membrane_bits=12))
    with pytest.raises(ArtifactError, match=r"layer 'conv0' channel \d+: membrane worst case"):
        to_artifact(net, tiny)
    net.set_quant(QuantSpec([12, 10, 9, 8], WeightFormat(bits=8), delay=2))
    with pytest.raises(ArtifactError, match="synaptic delay 2"):
        to_artifact(net, load_target("loihi2"))


def test_maxpool_is_refused():
    arch = [{"kind": "conv", "in": 1, "out": 2, "kernel": 3, "padding": 1, "stride": 1},
            {"kind": "maxpool", "kernel": 2}, {"kind": "flatten"}, {"kind": "dense", "in": 32, "out": 10}]
    net = TTFSNet(arch, (1, 8, 8))
    net.set_quant(QuantSpec([8, 8], WeightFormat(bits=8)))
    with pytest.raises(ArtifactError, match="max pooling"):
        to_artifact(net, load_target("emulator"))


def test_artifact_round_trips_and_needs_no_model(conv_net, tmp_path):
    net = conv_net
    net.set_quant(QuantSpec([12, 10, 9, 8], WeightFormat(bits=4)))
    artifact = to_artifact(net, load_target("emulator"), source="test")
    artifact.save(tmp_path / "a")
    loaded = Artifact.load(tmp_path / "a")
    k0 = np.random.default_rng(0).integers(0, 13, size=(20, 64))
    assert np.array_equal(emulate(loaded, k0).logits, emulate(artifact, k0).logits)
    assert loaded.meta["target"]["name"] == "emulator" and loaded.latency_steps == 12 + 10 + 9 + 8 + 4

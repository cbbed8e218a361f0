"""Quantized TTFS nets: integer-exact forward, passes that do what they say, seeded noise."""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from hwtune import io, numerics
from hwtune.numerics import WeightFormat
from hwtune.errors import ConfigError
from hwtune.passes import LatencyConfig, NoiseConfig, PassContext, QuantizeConfig, run_pass
from hwtune.target import TargetError, load_target
from hwtune.training import TrainConfig, train
from hwtune.ttfs import QuantSpec, TTFSNet, fc
from hwtune.device_noise import NoiseSpec
from hwtune.passes.noise import evaluation_noise


@pytest.fixture(scope="module")
def trained(digits):
    """A small FC TTFS net (64-32-10) trained on the digits for a few epochs (float32)."""
    torch.manual_seed(0)
    net = TTFSNet(fc((1, 8, 8), [32], 10), (1, 8, 8))
    train(net, digits.train_x, digits.train_y, TrainConfig(epochs=8, lr=3e-3, batch_size=32))
    net.info = {"dataset": digits.meta}
    return net


def clone(net):
    copy = TTFSNet(net.arch, net.input_shape, windows=net.windows.tolist(), dtype=net.dtype)
    copy.load_state_dict({k: v for k, v in net.state_dict().items()}, strict=False)
    copy.saturate, copy.info = net.saturate, dict(net.info)
    if net.quant is not None:
        copy.set_quant(net.quant)
    return copy


def independent_integer_logits(net, u):
    """Re-compute the quantized FC net with numpy int64 from brevitas' integer weights.

    Shares only the rule definitions of hwtune.numerics (encode_input, bias_mantissa, slope,
    fire); the matmuls, scales and layer chaining are written out here.
    """
    steps = net.quant.steps
    k = numerics.encode_input(u.reshape(len(u), -1).numpy(), steps[0]).astype(np.int64)
    window_in = 1.0
    for n, syn in enumerate(net.synapses):
        qt = syn.quant_weight()
        q = qt.int().numpy().astype(np.int64)
        s = float(qt.scale.reshape(-1)[0])
        beta = numerics.bias_mantissa(syn.bias.detach().double().numpy(), s, window_in, net.quant.weights.bias_bits)
        V = k @ q.T + beta.astype(np.int64) * steps[n]
        if n == net.n_hidden:
            return V, s * window_in / steps[n]
        window_out = float(net.windows[n])
        sigma = numerics.slope(window_out / steps[n + 1], s, window_in / steps[n])
        k = numerics.fire(V, sigma, steps[n + 1])
        window_in = window_out


@pytest.mark.parametrize("bits,steps", [(8, 16), (4, 16), (3, 8), (2, 4)])
def test_quantized_logits_equal_independent_integer_computation(trained, digits, bits, steps):
    net = clone(trained)
    net.windows.fill_(6.0)
    net.set_quant(QuantSpec([steps, steps], WeightFormat(bits=bits)))
    V, unit = independent_integer_logits(net, digits.test_x)
    logits = net(digits.test_x).double()
    assert np.array_equal(np.round(logits.detach().numpy() / unit).astype(np.int64), V)
    assert np.abs(logits.detach().numpy() - V * unit).max() < 1e-4 * max(1.0, np.abs(V * unit).max())
    assert len(np.unique(V)) > 10  # not a degenerate (all-silent) network


def test_quantized_gradient_flows_like_float(trained, digits):
    net = clone(trained)
    net.windows.fill_(6.0)
    net.set_quant(QuantSpec([16, 16], WeightFormat(bits=8)))
    loss = torch.nn.functional.cross_entropy(net(digits.train_x[:64]), digits.train_y[:64])
    loss.backward()
    grads = [syn.weight.grad for syn in net.synapses]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


@pytest.fixture(scope="module")
def ctx(digits):
    return PassContext(data=digits, target=load_target("loihi2"), seed=0)


def test_quantize_pass_stores_bits_and_steps(trained, ctx, tmp_path):
    net, record = run_pass(trained, QuantizeConfig(bits=4, steps=12, input_steps=10, epochs=1, lr=1e-3), ctx)
    io.save(net, tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    config = json.loads((tmp_path / "m" / "hwtune.json").read_text())
    for n in range(len(net.synapses)):
        q = tensors[f"int.{n}.weight"].astype(np.int64)
        assert q.min() >= -8 and q.max() <= 7          # 4-bit signed mantissas
        assert np.abs(q).max() >= 4                     # ... that use the 4th bit
    assert config["quant"]["steps"] == [10, 12]
    assert config["history"][-1]["pass"] == "quantize"
    assert record["accuracy_after"] >= record["accuracy_quantized"] - 0.05
    assert record["accuracy_after"] > 0.8
    loaded = io.load(tmp_path / "m")
    x = ctx.data.test_x[:50]
    assert torch.equal(loaded(x), net(x))


def test_a_pass_returns_a_changed_copy_and_leaves_its_input(trained, ctx):
    """run_pass(net) -> (new net, record): the given net keeps its weights, windows, saturation,
    grid and history, so callers (sweeps, studies) need no copies of their own."""
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    history = list(trained.info.get("history", []))
    net, record = run_pass(trained, QuantizeConfig(bits=4, steps=8, epochs=1, lr=1e-3), ctx)
    assert net is not trained and net.quant.steps[1:] == [8] and net.saturate and record["windows_fitted"]
    assert net.info["history"][-1]["pass"] == "quantize"
    assert trained.quant is None and not trained.saturate and trained.info.get("history", []) == history
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(net.windows, trained.windows)
    # a net already on a grid keeps its windows when re-quantized
    again, record = run_pass(net, QuantizeConfig(bits=6, steps=8, epochs=0), ctx)
    assert not record["windows_fitted"] and torch.equal(again.windows, net.windows)


def test_latency_pass_shortens_windows(trained, ctx):
    quantized, _ = run_pass(trained, QuantizeConfig(bits=8, steps=32, epochs=0), ctx)
    net, record = run_pass(quantized, LatencyConfig(steps=8, window_quantile=0.9, epochs=1, lr=1e-3), ctx)
    assert net.quant.steps == [net.quant.steps[0], 8]
    assert (net.windows < quantized.windows).all()
    assert record["latency_steps"] == net.quant.steps[0] + 8 + 2 * ctx.target.synaptic_delay
    assert record["latency_steps"] < record["latency_steps_before"]


def test_noise_is_reproducible_by_seed(trained, digits):
    net = clone(trained)
    x = digits.test_x[:100]
    outs = []
    spec = NoiseSpec(jitter=0.1, weight_mismatch=0.05, threshold_noise=0.05)
    for seed in (3, 3, 4):
        with net.conditions(noise=evaluation_noise(net, spec, seed, 0)):
            outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])
    assert not torch.equal(outs[0], net(x))


def test_noise_pass_eval_only_leaves_weights(trained, ctx):
    net = clone(trained)
    w = [s.weight.detach().clone() for s in net.synapses]
    net, record = run_pass(net, NoiseConfig(jitter=0.2, eval_only=True), ctx)
    assert all(torch.equal(a, s.weight) for a, s in zip(w, net.synapses))
    assert net.noise is None
    assert record["noisy_accuracy_before"] <= record["accuracy_before"] + 0.02


def test_passes_refuse_what_the_target_cannot_hold(trained, ctx, monkeypatch):
    """Refused before any evaluation or training (both would fail the test here)."""
    def no_work(*args, **kwargs):
        raise AssertionError("the pass worked before refusing")
    monkeypatch.setattr("hwtune.passes.base.evaluate", no_work)
    monkeypatch.setattr("hwtune.passes.base.train", no_work)
    net = clone(trained)
    with pytest.raises(TargetError, match="weights.bits"):
        run_pass(net, QuantizeConfig(bits=9), ctx)
    with pytest.raises(TargetError, match="max_steps_per_layer"):
        run_pass(net, QuantizeConfig(bits=4, steps=5000), ctx)
    with pytest.raises(ConfigError, match="give steps or time_bits, not both"):
        run_pass(net, QuantizeConfig(bits=4, steps=4, time_bits=3), ctx)

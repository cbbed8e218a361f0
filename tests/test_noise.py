"""Device noise (hwtune.device_noise): the torch model and the emulator apply the same draws exactly, a
frozen device is reproducible by its seed, evaluation devices are never training devices, and the
noise pass trains across devices."""
import numpy as np
import pytest
import torch

from hwtune.backends.emulator import EmulatorNoise, emulate
from hwtune.configs import NoiseConfig, TrainConfig
from hwtune.exporter import to_artifact
from hwtune.device_noise import EVAL, TRAIN, Device, NoiseSpec, rng
from hwtune.numerics import WeightFormat
from hwtune.passes import PassContext, run_pass
from hwtune.passes.noise import evaluation_noise, training_noise
from hwtune.target import load_target
from hwtune.training import train
from hwtune.ttfs import QuantSpec, TTFSNet, preset
from hwtune.workflow import encoded_inputs

ALL = NoiseSpec(jitter=0.2, threshold_noise=0.1, spike_deletion=0.1, weight_mismatch=0.3, threshold_mismatch=0.1)


@pytest.fixture(scope="module", params=["fc-small", "vgg-small"])
def quantized(request, digits):
    torch.manual_seed(0)
    net = TTFSNet(preset(request.param, (1, 8, 8), 10), (1, 8, 8))
    train(net, digits.train_x, digits.train_y, TrainConfig(epochs=3, lr=3e-3, batch_size=32), seed=0)
    net.windows.fill_(3.0)
    net.saturate = True
    net.set_quant(QuantSpec([12] * (net.n_hidden + 1), WeightFormat(bits=4, scale="per-channel")))
    return net


@pytest.mark.parametrize("spec", [ALL, NoiseSpec(weight_mismatch=0.5), NoiseSpec(threshold_mismatch=0.3),
                                  NoiseSpec(jitter=0.4, spike_deletion=0.3)])
def test_torch_equals_emulator_under_noise(quantized, digits, spec):
    """Shared draws (the same held-out device, the same trial generator): every activation and
    every logit of the quantized torch model equals the emulator's, fixed-pattern noise included."""
    net = quantized
    artifact = to_artifact(net, load_target("emulator"))
    x = digits.test_x[:200]
    for index in (0, 1):
        with torch.no_grad(), net.conditions(noise=evaluation_noise(net, spec, seed=3, index=index)):
            logits, acts = net.forward_with_activations(x)
        emu = emulate(artifact, encoded_inputs(x, artifact.input_steps),
                      noise=EmulatorNoise.evaluation(artifact, spec, seed=3, index=index))
        for n, (kt, ke) in enumerate(zip(acts, emu.activations)):
            assert np.array_equal(kt.reshape(len(x), -1).numpy().astype(np.int64), ke), f"layer {n}, device {index}"
        assert np.array_equal(np.round(logits.double().numpy() / artifact.layers[-1].logit_scale).astype(np.int64),
                              emu.logits)
    clean = emulate(artifact, encoded_inputs(x, artifact.input_steps))
    assert not np.array_equal(clean.logits, emu.logits)           # the noise did something


def test_a_device_is_frozen_by_its_seed(quantized):
    geometry = quantized.geometry()
    a, b = (Device.draw(ALL, geometry, rng(EVAL, 7, 0)) for _ in range(2))
    c = Device.draw(ALL, geometry, rng(EVAL, 8, 0))
    for x, y, z in zip(a.weight_eps, b.weight_eps, c.weight_eps):
        assert np.array_equal(x[0], y[0]) and not np.array_equal(x[0], z[0])
    if any(len(g.weight_shapes[0]) == 6 for g in geometry):   # conv: one kernel per position
        conv = next(e[0] for e in a.weight_eps if e[0].ndim == 6)
        assert not np.array_equal(conv[..., 0, 0], conv[..., 1, 1])
    train_device = Device.draw(ALL, geometry, rng(TRAIN, 7, 0))
    assert not np.array_equal(train_device.weight_eps[0][0], a.weight_eps[0][0])   # evaluation devices are held out


def test_training_draws_a_new_device_every_n_batches(quantized):
    state = training_noise(quantized, NoiseSpec(weight_mismatch=0.2), seed=0, device_every=2)
    seen = []
    for _ in range(5):
        state.begin(4)
        seen.append(float(state.device.weight_eps[0][0].reshape(-1)[0]))
    assert seen[0] == seen[1] != seen[2] == seen[3] != seen[4]


def test_noise_pass_hardens_against_the_targets_noise(quantized, digits, tmp_path):
    """A target's noise section is what the noise pass trains and evaluates under by default."""
    import yaml
    from hwtune.target import TARGETS_DIR
    data = yaml.safe_load((TARGETS_DIR / "emulator.yaml").read_text())
    data.update(name="noisy", noise={**NoiseSpec().to_dict(), "jitter": 0.3, "weight_mismatch": 0.2})
    (tmp_path / "noisy.yaml").write_text(yaml.safe_dump(data))
    target = load_target(str(tmp_path / "noisy.yaml"))
    ctx = PassContext(data=digits, target=target, seed=0, samples=200)
    net, record = run_pass(quantized, NoiseConfig(epochs=1, lr=1e-3, devices=3), ctx)
    assert record["noise"]["jitter"] == 0.3 and record["noise"]["weight_mismatch"] == 0.2 and record["devices"] == 3
    assert record["noisy_accuracy_before"] < record["accuracy_before"]
    assert net.noise is None and record["finetune"]


def test_window_search_shortens_the_windows_under_heavy_jitter(digits):
    """Jitter moves spikes by a fraction of a window's steps whatever its length. On the FC net
    (windows 3.0, about its 0.999 quantile) under jitter 0.5, a shorter window (activations over
    more steps) wins accuracy on held-out images and devices; the windows end scaled by the chosen
    factor exactly, and that factor has the best score on training data."""
    import copy
    from hwtune.passes.noise import WINDOW_SCALES, evaluate_under_noise, search_window_scale
    torch.manual_seed(0)
    fc = TTFSNet(preset("fc-small", (1, 8, 8), 10), (1, 8, 8))
    train(fc, digits.train_x, digits.train_y, TrainConfig(epochs=3, lr=3e-3, batch_size=32), seed=0)
    fc.windows.fill_(3.0)
    fc.saturate = True
    fc.set_quant(QuantSpec([12] * (fc.n_hidden + 1), WeightFormat(bits=4, scale="per-channel")))
    net, spec = copy.deepcopy(fc), NoiseSpec(jitter=0.5)
    found = search_window_scale(net, spec, digits.train_x, digits.train_y, seed=0)
    scale = found["window_scale"]
    assert list(found["scores"]) == [f"{f:.3g}" for f in WINDOW_SCALES]
    assert found["scores"][f"{scale:.3g}"] == max(found["scores"].values()) and scale < 1
    assert torch.equal(net.windows, scale * fc.windows)
    x, y = digits.test_x, digits.test_y
    assert evaluate_under_noise(net, x, y, spec, 3, 0)["accuracy"] > evaluate_under_noise(fc, x, y, spec, 3, 0)["accuracy"] + 0.05


def test_window_search_without_noise_scores_clean_accuracy(quantized, digits):
    import copy
    from hwtune.passes.noise import SEARCH_SAMPLES, search_window_scale
    from hwtune.training import evaluate
    net = copy.deepcopy(quantized)
    found = search_window_scale(net, NoiseSpec(), digits.train_x, digits.train_y, seed=0)
    pick = torch.randperm(len(digits.train_x), generator=torch.Generator().manual_seed(0))[:SEARCH_SAMPLES]
    assert found["scores"]["1"] == evaluate(quantized, digits.train_x[pick], digits.train_y[pick])["accuracy"]


@pytest.mark.parametrize("case", ["float net", "eval only"])
def test_window_search_is_refused_where_it_cannot_apply(quantized, digits, case, monkeypatch):
    """Refused before any evaluation (which would fail the test here)."""
    import copy
    from hwtune.passes import PassError
    net = copy.deepcopy(quantized)
    if case == "float net":
        net.set_quant(None)
    ctx = PassContext(data=digits, target=load_target("emulator"), seed=0, samples=50)
    monkeypatch.setattr("hwtune.passes.base.evaluate", lambda *a, **k: pytest.fail("evaluated before refusing"))
    with pytest.raises(PassError, match="window_search"):
        run_pass(net, NoiseConfig(jitter=0.3, window_search=True, eval_only=case == "eval only", epochs=0), ctx)


def test_the_forwards_conditions_are_set_for_a_block_and_put_back():
    """net.conditions(noise=..., quant=..., saturate=...) applies them for the block only, also when
    it raises; an unknown condition is refused."""
    from hwtune.ttfs.net import TTFSNet
    net = TTFSNet([{"kind": "dense", "in": 4, "out": 3}, {"kind": "dense", "in": 3, "out": 2}], (4,))
    marker = object()
    with pytest.raises(RuntimeError):
        with net.conditions(noise=marker, saturate=True):
            assert net.noise is marker and net.saturate is True
            raise RuntimeError("fine-tuning failed")
    assert net.noise is None and net.saturate is False
    with pytest.raises(TypeError, match="unknown \\['windows'\\]"):
        with net.conditions(windows=None):
            pass

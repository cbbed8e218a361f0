"""hwtune.backends.emulator.FastEmulator: the fast mode prepared once per artifact gives emulate()'s
integers batch after batch (chain, conv and graph nets, device noise), refuses what emulate() refuses,
prepares its kernels once (no per-batch prepacking, no scan of the inputs for the int8 choice) and
runs on the engine it was prepared on."""
import numpy as np
import pytest
from graph_cases import pixels, quantized_artifact, random_graph, relu_net
from test_emulator import golden_artifact, overflow_artifact
from test_engine import spy_int8

from hwtune.backends.emulator import EmulatorError, EmulatorNoise, FastEmulator, emulate
from hwtune.device_noise import NoiseSpec
from hwtune.layers import engine
from hwtune.random_artifacts import random_artifact, random_conv_artifact
from hwtune.ttfs.convert import from_relu
from hwtune.workflow import encoded_inputs


def same(a, b) -> bool:
    return all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.activations, b.activations)) and \
        all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.potentials, b.potentials)) and \
        len(a.activations) == len(b.activations) and len(a.potentials) == len(b.potentials)


def graph_artifact(seed: int):
    arch, shape, _ = random_graph(seed)
    x = pixels(shape, 16, seed=seed)
    return quantized_artifact(from_relu(relu_net(arch, shape, seed=seed), x), bits=4, delay=1, seed=seed), x


def nets():
    rng = np.random.default_rng(7)
    yield random_artifact(rng, [784, 340, 10], bits=4, steps=16)                    # int8 hidden layer
    yield random_conv_artifact(rng, (2, 8, 8), [("conv", 16, 3, 1, 1), ("pool", 2), ("conv", 16, 3, 1, 1),
                                                ("dense", 130)], 10, bits=4, steps=8)
    for seed in (0, 3):                                                               # add, concat, pooling
        yield graph_artifact(seed)[0]


@pytest.mark.parametrize("net", list(nets()), ids=["fc", "conv", "graph0", "graph3"])
def test_prepared_equals_emulate_batch_after_batch(net):
    """Batches of different sizes through one FastEmulator == emulate() on each batch == stepped."""
    rng = np.random.default_rng(1)
    fast = FastEmulator(net)
    for batch in (9, 1, 17):
        k0 = rng.integers(0, net.input_steps + 1, (batch, net.n_in)) * (rng.random((batch, net.n_in)) < 0.7)
        result = fast(k0)
        assert result.mode == "fast" and same(result, emulate(net, k0))
        stepped = emulate(net, k0, mode="stepped")
        assert all(np.array_equal(x, y) for x, y in zip(result.potentials, stepped.potentials))


def test_prepared_with_device_noise_equals_emulate():
    """Device noise (mismatched weights drawn per batch, threshold offsets) through one FastEmulator ==
    emulate() fed the same draws."""
    net = next(nets())
    k0 = np.random.default_rng(2).integers(0, 17, (6, 784))
    spec = NoiseSpec(weight_mismatch=0.2, threshold_mismatch=0.1, threshold_noise=0.1)
    fast = FastEmulator(net)
    a, b = (EmulatorNoise.evaluation(net, spec, seed=0, index=1) for _ in range(2))
    for _ in range(2):
        noisy = fast(k0, noise=a)
        assert same(noisy, emulate(net, k0, noise=b))
    assert not same(noisy, fast(k0))


def test_refuses_what_emulate_refuses():
    """Weights beyond weight_bits and registers that can overflow are refused when it is built, with
    emulate()'s messages; bad inputs on every call."""
    bad = golden_artifact()
    bad.layers[0].weight[0, 0] = 1000
    with pytest.raises(EmulatorError, match=r"layer 'hidden' neuron 0: weight 1000 .* 4-bit signed range"):
        FastEmulator(bad)
    with pytest.raises(EmulatorError, match=r"layer 'out' neuron 0: membrane worst case 124 .* mode='stepped'"):
        FastEmulator(overflow_artifact("error"))
    fast = FastEmulator(golden_artifact())
    for k0, pattern in ((np.array([[1.5, 0]]), "must be integers"), (np.array([[-1, 0]]), r"must lie in \[0, T_0"),
                        (np.zeros((1, 3)), "must have shape")):
        with pytest.raises(EmulatorError, match=pattern):
            fast(k0)


def test_kernels_prepared_once_without_scanning_inputs(monkeypatch):
    """Three batches: the int8 weights are prepacked once and the inputs never scanned for the int8
    choice (the bound k <= T decides), yet the int8 kernel runs on every batch."""
    net = next(nets())
    built = []
    original = engine.Int8Dense.__init__
    monkeypatch.setattr(engine.Int8Dense, "__init__", lambda self, w: built.append(w.shape) or original(self, w))
    fast = FastEmulator(net)
    ran = spy_int8(monkeypatch)
    monkeypatch.setattr(engine, "input_max", lambda x: pytest.fail("an input was scanned"))
    k0 = np.random.default_rng(3).integers(0, 17, (3, 5, 784))
    results = [fast(k) for k in k0]
    assert built == [(340, 784)] and ran == ["Int8Dense"] * 3
    monkeypatch.undo()
    assert all(same(r, emulate(net, k)) for r, k in zip(results, k0))


def test_runs_on_the_engine_it_was_prepared_on(monkeypatch):
    """Prepared under engine.forced("numpy"), it runs numpy's kernels outside that block too (the
    benchmark times each engine so), with the same integers as on the natural engine."""
    net = next(nets())
    with engine.forced("numpy"):
        fast = FastEmulator(net)
    ran = spy_int8(monkeypatch)
    k0 = np.random.default_rng(4).integers(0, 17, (5, 784))
    assert same(fast(k0), FastEmulator(net)(k0)) and ran == ["Int8Dense"]     # the natural one's only
    assert fast.engine == "numpy" and engine.active() == engine.natural()


def test_emulate_artifact_streams_through_one_prepared_emulator(monkeypatch):
    """workflow.emulate_artifact (the CLI emulate, evaluation, sweeps) builds one FastEmulator per run."""
    from hwtune import workflow
    import torch
    net, x = graph_artifact(0)
    built = []
    original = FastEmulator.__init__
    monkeypatch.setattr(FastEmulator, "__init__", lambda self, a: built.append(a) or original(self, a))
    result, pred = workflow.emulate_artifact(net, x.float(), torch.zeros(len(x), dtype=torch.int64), batch_size=5)
    assert len(built) == 1 and result["n"] == 16
    assert np.array_equal(pred, emulate(net, encoded_inputs(x.float(), net.input_steps)).predictions)


@pytest.mark.parametrize("mode", ["fast", "stepped"])
def test_emulate_in_batches_equals_one_batch(mode):
    """emulate_in_batches: batches of 7 of 23 samples give emulate()'s integers on all 23 at once (types
    included), on a conv net and a graph."""
    from hwtune.backends.emulator import emulate_in_batches
    rng = np.random.default_rng(3)
    for net in list(nets())[1:3]:
        k0 = rng.integers(0, net.input_steps + 1, (23, net.n_in)) * (rng.random((23, net.n_in)) < 0.7)
        assert same(emulate_in_batches(net, k0, 7, mode=mode), emulate(net, k0, mode=mode))


def test_the_api_emulate_streams_the_clis_batches(monkeypatch):
    """hwtune.emulate runs its samples in the batches of `hwtune emulate` (training.eval_batch: here made
    5), not all at once, and returns what one emulate() call on all of them returns."""
    import hwtune
    from hwtune import training
    net = list(nets())[1]
    import torch
    x = torch.from_numpy(np.random.default_rng(4).random((12, *net.input_shape)))
    whole = emulate(net, encoded_inputs(x, net.input_steps))
    monkeypatch.setattr(training, "EVAL_BATCH", 5)
    sizes, run = [], FastEmulator._run
    monkeypatch.setattr(FastEmulator, "_run", lambda self, k0, *a: sizes.append(len(k0)) or run(self, k0, *a))
    assert same(hwtune.emulate(net, x), whole) and sizes == [5, 5, 2]

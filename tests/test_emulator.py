"""hwtune.backends.emulator: golden stepped neuron, stepped == fast, overflow rules, jitter, metrics."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtune import numerics
from hwtune.artifact import Artifact, ArtifactLayer, dense_layer
from hwtune.random_artifacts import random_artifact
from hwtune.backends import RunResult
from hwtune.backends.emulator import EmulatorError, MembraneOverflowError, emulate
from hwtune.layers import Dense, exact_dtype


def golden_artifact(**changes) -> Artifact:
    """2 inputs -> 1 hidden neuron -> 1 read-out neuron; T_0 = T_1 = 4, d = 1.

    Hand derivation (docs/design.md, time-stepped semantics), input k0 = [3, 1]:
    schedule F = [0, 5, 10]. Inputs spike at steps T_0 - k0 = 1 and 3, arrive at 2 and 4.
    Hidden (q = [2, -1], beta = 1, sigma = 3, theta = 3 * 5 = 15) integrates on steps 1..4:
        step 1: a=0   u=0  v=0+0+1=1
        step 2: a=2   u=2  v=1+2+1=4
        step 3: a=0   u=2  v=4+2+1=7
        step 4: a=-1  u=1  v=7+1+1=9      -> V = 9 = 2*3 - 1*1 + 1*4
    fires on steps 5..8: step 5: v=12 < 15; step 6: v=15 >= 15 -> spike at step 6,
        m = 1, k = T_1 - m = 3 = floor(9 / 3).
    Read-out (q = [2], beta = -1) integrates on steps 6..9; the spike arrives at 7:
        step 6: u=0 v=-1;  step 7: u=2 v=0;  step 8: v=1;  step 9: v=2  -> logit 2 = 2*3 - 1*4.
    """
    hidden = dense_layer(name="hidden", weight=np.array([[2, -1]]), bias=np.array([1]), slope=np.array([3]),
                           window_steps=4, readout=False)
    out = dense_layer(name="out", weight=np.array([[2]]), bias=np.array([-1]), slope=None, window_steps=None,
                        readout=True)
    kw = dict(layers=[hidden, out], input_shape=(2,), input_steps=4, synaptic_delay=1, weight_bits=4,
              membrane_bits=8)
    kw.update(changes)
    return Artifact(**kw)


GOLDEN_K0 = np.array([[3, 1]])


def test_golden_neuron_update_by_hand():
    u = v = np.array([0])
    trace = []
    for a_in in (0, 2, 0, -1):
        u, v = numerics.integrate(u, v, a_in, 1)
        trace.append((int(u[0]), int(v[0])))
    assert trace == [(0, 1), (2, 4), (2, 7), (1, 9)]
    fired, spikes = np.array([False]), []
    for _ in range(4):
        v, spike, fired = numerics.fire_step(v, fired, 3, numerics.threshold(3, 4))
        spikes.append(bool(spike[0]))
    assert spikes == [False, True, False, False] and int(v[0]) == 9 + 4 * 3


@pytest.mark.parametrize("mode", ["stepped", "fast"])
def test_golden_emulator(mode):
    r = emulate(golden_artifact(), GOLDEN_K0, mode=mode)
    assert [k.tolist() for k in r.activations] == [[[3, 1]], [[3]]]
    assert [s.tolist() for s in r.spike_steps] == [[[1.0, 3.0]], [[1.0]]]
    assert [p.tolist() for p in r.potentials] == [[[9]], [[2]]]
    assert r.logits.dtype == (np.int64 if mode == "stepped" else np.int32) and r.latency_steps == 10
    wide = emulate(golden_artifact(membrane_bits=40), GOLDEN_K0, mode=mode)
    assert wide.logits.dtype == np.int64 and wide.logits.tolist() == [[2]]     # registers beyond 32 bits


def test_golden_delay_two_changes_nothing_but_the_schedule():
    a = golden_artifact(synaptic_delay=2)
    assert a.schedule == [0, 6, 12]
    r = emulate(a, GOLDEN_K0, mode="stepped")
    assert [p.tolist() for p in r.potentials] == [[[9]], [[2]]]


def assert_results_equal(a, b):
    for name in ("activations", "spike_steps", "potentials"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert x.shape == y.shape and np.array_equal(x, y), name
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.predictions, b.predictions)


def random_case(seed: int, depth: int, bits: int, delay: int, batch: int = 16):
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(1, 10, depth + 2)]
    steps = [int(t) for t in rng.integers(1, 9, depth + 1)]
    a = random_artifact(rng, sizes, bits=bits, steps=steps, delay=delay)
    k0 = rng.integers(0, a.input_steps + 1, (batch, a.n_in)) * (rng.random((batch, a.n_in)) < 0.7)
    return a, k0


def noise_for(a, seed, **levels):
    """An EmulatorNoise with these levels; a fresh object per call, so two calls draw the same."""
    from hwtune.backends.emulator import EmulatorNoise
    from hwtune.device_noise import NoiseSpec
    return EmulatorNoise.evaluation(a, NoiseSpec(**levels), seed, 0) if levels else None


NOISE_LEVELS = [{}, {"jitter": 0.1}, {"jitter": 0.5, "spike_deletion": 0.2},
                {"threshold_noise": 0.2, "threshold_mismatch": 0.1}, {"weight_mismatch": 0.3}]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), depth=st.integers(0, 3), bits=st.integers(1, 8), delay=st.integers(1, 3),
       levels=st.sampled_from(NOISE_LEVELS))
def test_stepped_equals_fast(seed, depth, bits, delay, levels):
    a, k0 = random_case(seed, depth, bits, delay)
    a.membrane_bits = min(60, a.membrane_bits + 4)     # room for a device's mismatched weights and offsets
    fast = emulate(a, k0, "fast", noise=noise_for(a, seed, **levels))
    stepped = emulate(a, k0, "stepped", noise=noise_for(a, seed, **levels))
    assert_results_equal(fast, stepped)


def test_random_cases_cover_the_corners():
    """The differential test above is only as good as its nets: they must contain silent,
    intermediate and saturating neurons (also V >= theta, spiking on the first firing step),
    negative V and negative biases."""
    silent = middle = saturated = beyond_theta = negative_v = negative_bias = 0
    for seed in range(40):
        a, k0 = random_case(seed, depth=2, bits=4, delay=1)
        r = emulate(a, k0)
        for k, layer, V in zip(r.activations[1:], a.hidden, r.potentials):
            silent += (k == 0).sum()
            saturated += (k == layer.window_steps).sum()
            middle += ((k > 0) & (k < layer.window_steps)).sum()
            beyond_theta += (V >= numerics.threshold(layer.slope, layer.window_steps)).sum()
            negative_v += (V < 0).sum()
        negative_bias += sum((layer.bias < 0).sum() for layer in a.layers)
    assert min(silent, middle, saturated, beyond_theta, negative_v, negative_bias) > 100


def reference_fast(a: Artifact, k0: np.ndarray) -> list[np.ndarray]:
    """The closed form in Python integers (object arrays): no float, no overflow."""
    k, potentials = k0.astype(object), []
    for layer, steps_in in zip(a.layers, a.window_steps):
        V = k.dot(layer.weight.astype(object).T) + layer.bias.astype(object) * steps_in
        potentials.append(V)
        if not layer.readout:
            k = np.clip(V // layer.slope.astype(object), 0, layer.window_steps)
    return potentials


@pytest.mark.parametrize("bits, steps, dtype", [(8, 8, np.float32), (16, 256, np.float64), (32, 2 ** 16, np.int64)])
def test_fast_is_exact_in_each_arithmetic(bits, steps, dtype):
    rng = np.random.default_rng(bits)
    a = random_artifact(rng, [12 if bits < 32 else 600, 9, 4], bits=bits, steps=steps)
    assert exact_dtype(int(np.abs(a.layers[0].weight).sum(axis=1).max()) * steps) is dtype
    k0 = rng.integers(0, steps + 1, (50, a.n_in))
    r = emulate(a, k0)
    for V, ref in zip(r.potentials, reference_fast(a, k0)):
        assert np.array_equal(V, ref.astype(np.int64))


@pytest.mark.parametrize("dtype, p", [(np.float32, 24), (np.float64, 53)])
def test_fire_on_exact_floats_equals_integer_floor_division(dtype, p):
    """numerics.fire on integer-valued floats with |V| < 2^p == Python's integer floor division, at
    the hardest places: multiples of sigma and their neighbours, up to the largest V allowed."""
    rng = np.random.default_rng(p)
    sigma = int(rng.integers(3, 2 ** 12))
    base = rng.integers(-(2 ** p - 1) // sigma, (2 ** p - 1) // sigma, 3000, dtype=np.int64) * sigma
    V = np.concatenate([base - 1, base, base + 1, [2 ** p - 1, -(2 ** p - 1), 2 ** p - sigma]])
    V = V[np.abs(V) < 2 ** p]
    steps = 2 ** p
    k = numerics.fire(V.astype(dtype), sigma, steps)
    assert k.dtype == dtype
    assert [int(x) for x in k] == [min(max(int(v) // sigma, 0), steps) for v in V.tolist()]


def test_exact_dtype_limits():
    assert exact_dtype(2 ** 24) is np.float32
    assert exact_dtype(2 ** 24 + 1) is np.float64
    assert exact_dtype(2 ** 53) is np.float64
    assert exact_dtype(2 ** 53 + 1) is np.int64


def overflow_artifact(mode: str) -> Artifact:
    """1 input (q = 31), T_0 = 4, membrane_bits = 6 (range [-32, 31]), read-out only."""
    out = dense_layer(name="out", weight=np.array([[31]]), bias=np.array([0]), slope=None, window_steps=None,
                        readout=True)
    return Artifact(layers=[out], input_shape=(1,), input_steps=4, synaptic_delay=1, weight_bits=6,
                    membrane_bits=6, overflow=mode)


def test_overflow_error_names_layer_neuron_and_step():
    # k0 = 4: spike at step 0 arrives at 1; step 1: u = 31, v = 31; step 2: v = 62 > 31
    with pytest.raises(MembraneOverflowError, match=r"layer 'out' neuron 0 of sample 1: potential v = 62 at step 2 "
                                                    r"leaves the 6-bit signed range \[-32, 31\]"):
        emulate(overflow_artifact("error"), np.array([[0], [4]]), mode="stepped")
    # with k0 = 1 (arrives at step 4, the last one) v = 31 fits: stepped mode only checks actual values
    assert emulate(overflow_artifact("error"), np.array([[1]]), mode="stepped").logits.tolist() == [[31]]


def test_overflow_saturate_and_wrap():
    k0 = np.array([[4]])                    # u = 31 on steps 1..4
    assert emulate(overflow_artifact("saturate"), k0, mode="stepped").logits.tolist() == [[31]]
    # wrap: v = 31, 62 -> -2, 29, 60 -> -4
    assert emulate(overflow_artifact("wrap"), k0, mode="stepped").logits.tolist() == [[-4]]


@pytest.mark.parametrize("mode", ["error", "saturate", "wrap"])
def test_fast_refuses_an_artifact_that_can_overflow(mode):
    with pytest.raises(EmulatorError, match=r"layer 'out' neuron 0: membrane worst case 124 .* mode='stepped'"):
        emulate(overflow_artifact(mode), np.array([[1]]))


def test_jitter_draws_and_rules():
    from hwtune.device_noise import EVAL, rng
    a, k0 = random_case(7, depth=2, bits=8, delay=1, batch=200)
    clean = emulate(a, k0)
    jit = emulate(a, k0, noise=noise_for(a, 5, jitter=0.3))
    assert np.array_equal(jit.activations[0], k0)                       # inputs are not jittered
    eps = rng(EVAL, 5, 1).standard_normal(clean.activations[1].shape)   # device 0's trial stream, layer 1 first
    T1 = a.hidden[0].window_steps
    delta = np.round(eps * (0.3 * T1)).astype(np.int64)
    assert np.array_equal(jit.activations[1], numerics.jitter(clean.activations[1], delta, T1))
    assert not np.array_equal(jit.activations[1], clean.activations[1])
    assert np.array_equal(emulate(a, k0, noise=noise_for(a, 5, jitter=0.3)).logits, jit.logits)
    assert_results_equal(emulate(a, k0, noise=noise_for(a, 5, jitter=0.0)), clean)


@pytest.mark.parametrize("k0, pattern", [
    (np.zeros((1, 3)), r"shape \(batch, 2\)"), (np.array([[0.5, 1]]), "integers"), (np.array([[9, 0]]), "T_0=4"),
    (np.array([["a", "b"]]), "numbers"),
])
def test_bad_input_is_a_clear_error(k0, pattern):
    with pytest.raises(EmulatorError, match=pattern):
        emulate(golden_artifact(), k0)


def test_bad_mode():
    with pytest.raises(EmulatorError, match="mode must be"):
        emulate(golden_artifact(), GOLDEN_K0, mode="slow")


def test_metrics_on_the_golden_case():
    r = emulate(golden_artifact(), np.array([[3, 1], [0, 2], [0, 0]]))
    # sample 0: 2 input spikes (fan-out 1 each) + 1 hidden spike (fan-out 1) -> 3 events
    # sample 1: V = -2 + 4 = 2 < sigma -> hidden silent; 1 input spike -> 1 event; sample 2: nothing but bias
    assert r.activations[1].tolist() == [[3], [0], [1]]
    assert r.spike_counts().tolist() == [1, 0, 1]
    assert r.spike_counts(include_input=True).tolist() == [3, 1, 1]
    assert r.spikes_per_neuron(include_input=True).tolist() == [1.0, 1 / 3, 1 / 3]
    assert r.synaptic_events().tolist() == [3, 1, 1]


def test_synaptic_events_count_nonzero_fan_out_only():
    a = golden_artifact()
    a.layers[0].weight[0, 1] = 0            # input 1 now reaches nobody
    r = emulate(a, np.array([[3, 1]]))
    assert r.synaptic_events().tolist() == [1 + 1]


def test_predictions_break_ties_to_the_lowest_index():
    a = golden_artifact()
    r = RunResult(artifact=a, activations=[],
                  potentials=[np.array([[5, 7, 7, 1], [2, 2, 2, 2], [-3, -1, -2, -1]])])
    assert r.predictions.tolist() == [1, 0, 1]


def test_stepped_refuses_registers_int64_cannot_hold():
    with pytest.raises(EmulatorError, match="at most 60 bits"):
        emulate(golden_artifact(membrane_bits=61), GOLDEN_K0, mode="stepped")
    a = golden_artifact(weight_bits=32, membrane_bits=60)
    a.layers[0].bias[0] = 2 ** 61
    with pytest.raises(EmulatorError, match="layer 'hidden': weights, bias or threshold reach 2\\^60"):
        emulate(a, GOLDEN_K0, mode="stepped")


def test_the_emulator_refuses_what_the_hardware_refuses():
    """A weight the artifact's weight_bits cannot hold is refused by both modes (as by Lava)."""
    a = golden_artifact()
    a.layers[0].weight[0, 0] = 1000                       # 4-bit weights: [-8, 7]
    for mode in ("fast", "stepped"):
        with pytest.raises(EmulatorError, match=r"layer 'hidden' neuron 0: weight 1000 .* 4-bit signed range"):
            emulate(a, GOLDEN_K0, mode=mode)


def random_conv_case(seed: int, delay: int = 1, batch: int = 6):
    """A random conv net (1-2 conv layers with stride 1-2, padding 0-1, an optional 2x2 sum pool,
    a dense layer) on a random (C, H, W) input, per-neuron or per-layer slopes."""
    from hwtune.random_artifacts import random_conv_artifact
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(5, 10)), int(rng.integers(5, 10)))
    plan, h = [], min(shape[1:])
    for _ in range(int(rng.integers(1, 3))):
        k, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
        if (h + 2 * p - k) // s + 1 < 2:
            break
        plan.append(("conv", int(rng.integers(1, 5)), k, s, p))
        h = (h + 2 * p - k) // s + 1
        if h >= 4 and rng.random() < 0.5:
            plan.append(("pool", 2))
            h //= 2
    plan.append(("dense", int(rng.integers(2, 7))))
    steps = [int(t) for t in rng.integers(1, 7, sum(p[0] != "pool" for p in plan) + 2)]
    a = random_conv_artifact(rng, shape, plan, 3, bits=int(rng.integers(2, 9)), steps=steps, delay=delay,
                             slope=str(rng.choice(["per-neuron", "per-layer"])))
    k0 = rng.integers(0, a.input_steps + 1, (batch, a.n_in)) * (rng.random((batch, a.n_in)) < 0.7)
    return a, k0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), delay=st.integers(1, 3), levels=st.sampled_from(NOISE_LEVELS))
def test_conv_stepped_equals_fast(seed, delay, levels):
    a, k0 = random_conv_case(seed, delay)
    a.membrane_bits = min(60, a.membrane_bits + 4)
    assert_results_equal(emulate(a, k0, "fast", noise=noise_for(a, seed, **levels)),
                         emulate(a, k0, "stepped", noise=noise_for(a, seed, **levels)))


def test_conv_fast_equals_python_integers():
    """The im2col convolution in float32/float64 equals the convolution in Python integers."""
    for seed in range(5):
        a, k0 = random_conv_case(seed)
        r = emulate(a, k0)
        k = k0.astype(object)
        for n, layer in enumerate(a.layers):
            m = layer.stage.matrix()
            m = m.toarray() if hasattr(m, "toarray") else m
            V = k.dot(m.astype(object).T) + np.repeat(layer.bias, layer.n_out // len(layer.bias)).astype(object) * \
                a.window_steps[n]
            assert np.array_equal(r.potentials[n], V.astype(np.int64))
            if not layer.readout:
                sigma = np.repeat(layer.slope, layer.n_out // len(layer.slope)).astype(object)
                k = np.clip(V // sigma, 0, layer.window_steps)


@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 0), (1, 1, 0), (5, 2, 2), (2, 3, 1)])
def test_conv2d_and_sum_pool_equal_torch(k, s, p, monkeypatch):
    """hwtune.layers on integers == torch conv2d (cross-correlation) and avg_pool2d x area, in float64;
    in every exact type, in chunks that leave a remainder, and with the kernel given per position."""
    import torch
    from hwtune.layers import Conv2d, SumPool, conv2d
    rng = np.random.default_rng(k * 10 + s)
    x = rng.integers(0, 9, (3, 2, 11, 9))
    q = rng.integers(-8, 8, (4, 2, k, k))
    conv = Conv2d(weight=q, in_shape=(2, 11, 9), stride=s, padding=p)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(q).double(), stride=s, padding=p)
    ref = ref.numpy().astype(np.int64)
    monkeypatch.setattr(conv2d, "IM2COL_BYTES", 2 * q[0].size * ref[0, 0].size * 8)   # 2 samples per chunk
    for dtype in (np.float32, np.float64, np.int64):
        out = conv.apply(x, dtype)
        assert out.dtype == dtype and np.array_equal(out, ref)
    per_position = np.broadcast_to(q[..., None, None], q.shape + ref.shape[2:])
    assert np.array_equal(conv.abs_sums(per_position), np.abs(q).reshape(4, -1).sum(axis=1))
    assert np.array_equal(conv.apply(x, np.float64, per_position), ref)
    assert conv.output_shape() == tuple(ref.shape[1:])
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(x).double(), 3) * 9
    assert np.array_equal(SumPool(kernel=3).apply(x), np.round(pooled.numpy()).astype(np.int64))
    assert np.array_equal(SumPool(kernel=2).apply(x.astype(np.float32)), x[:, :, :10, :8].reshape(3, 2, 5, 2, 4, 2).sum(axis=(3, 5)))


def test_register_and_emission_rules_by_hand():
    """numerics' overflow rules and spike steps (the emulator's only integer rules), by hand."""
    from hwtune import numerics
    assert numerics.saturate(np.array([-200, -128, 5, 127, 300]), 8).tolist() == [-128, -128, 5, 127, 127]
    assert numerics.wrap(np.array([128, -129, 255, 256, -1]), 8).tolist() == [-128, 127, -1, 0, -1]
    # window starting at step 10, T = 4: k = 4 spikes at 10, k = 1 at 13, k = 0 never (-1)
    assert numerics.emission_step(np.array([0, 1, 4]), 10, 4).tolist() == [-1, 13, 10]


def test_stepped_mode_never_takes_a_silent_input_for_a_late_arrival():
    """A read-out adding a dense synapse of the sample to one of a hidden layer: the sample's spikes wait
    d + D steps, so t - (d + D) passes -1, the step the emulator marks silent inputs with; silent
    inputs must still count nothing (fast == stepped)."""
    from hwtune.layers import Stage
    from hwtune.layers.add import Add
    rng = np.random.default_rng(3)
    hidden = dense_layer("h", rng.integers(-3, 4, (3, 4)), np.zeros(3, dtype=np.int64), np.ones(3, dtype=np.int64), 5,
                         readout=False)
    join = Add(branches=(Stage(Dense(weight=rng.integers(-3, 4, (2, 3)))), Stage(Dense(weight=rng.integers(-3, 4, (2, 4))))))
    out = ArtifactLayer(name="out", synapse=join, bias=np.zeros(2, dtype=np.int64), slope=None, window_steps=None,
                        readout=True, in_shapes=((3,), (4,)), inputs=("h", "input"))
    a = Artifact(layers=[hidden, out], input_shape=(4,), input_steps=3, synaptic_delay=2, weight_bits=3,
                 membrane_bits=16)
    assert a.timing.arrival_delay(1, 0) - 1 > 0              # the sample's spikes arrive late
    k0 = np.array([[0, 0, 0, 0], [3, 0, 1, 0], [0, 2, 0, 0]])
    assert_results_equal(emulate(a, k0, "fast"), emulate(a, k0, "stepped"))
    assert np.array_equal(emulate(a, k0, "stepped").logits[0], np.zeros(2))   # no input spike: V = 0

"""hwtune.artifact: construction checks, save/load round trip, corrupted files, hardware checks."""
import json
import os
import subprocess
import sys
from dataclasses import fields, replace

import numpy as np
import pytest

from hwtune import artifact as art_mod
from hwtune.artifact import (ARRAYS_FILE, JSON_FILE, Artifact, ArtifactError, ArtifactLayer, check, dense_layer,
                             violations)
from hwtune.random_artifacts import random_artifact, random_conv_artifact
from hwtune.layers import Conv2d, Dense, Flatten, SumPool
from hwtune.atomic import MANIFEST


def small(**changes) -> Artifact:
    """2 inputs -> 3 hidden (T_1 = 5) -> 2 read-out, T_0 = 4, d = 1."""
    hidden = dense_layer(name="h", weight=np.array([[1, -2], [3, 0], [0, 0]]), bias=np.array([0, -1, 2]),
                           slope=np.array([1, 2, 3]), window_steps=5, readout=False)
    out = dense_layer(name="out", weight=np.array([[1, 1, 1], [-1, 0, 2]]), bias=np.array([0, 5]),
                        slope=None, window_steps=None, readout=True, logit_scale=0.25)
    kw = dict(layers=[hidden, out], input_shape=(2,), input_steps=4, synaptic_delay=1, weight_bits=4,
              membrane_bits=16, overflow="error", meta={"target": "test", "note": [1, 2]})
    kw.update(changes)
    return Artifact(**kw)


def assert_same(a: Artifact, b: Artifact):
    for f in fields(Artifact):
        if f.name != "layers":
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert len(a.layers) == len(b.layers) and a.edges() == b.edges()
    for la, lb in zip(a.layers, b.layers):
        for f in fields(ArtifactLayer):
            x, y = getattr(la, f.name), getattr(lb, f.name)
            if f.name == "inputs":      # None (default edge) or explicit: compared through edges()
                continue
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype == np.int64 and x.shape == y.shape and (x == y).all(), f.name
            elif f.name == "synapse":
                assert x.to_json() == y.to_json() and np.array_equal(x.weight, y.weight)
                assert x.weight.dtype == y.weight.dtype == np.int64
            else:
                assert x == y, f.name


def test_schedule_properties():
    a = small()
    assert a.window_steps == [4, 5]
    assert a.schedule == [0, 5, 11]          # F_1 = 0 + 1 + 4, F_2 = 5 + 1 + 5
    assert a.latency_steps == 11
    assert (a.n_in, a.n_out, len(a.hidden)) == (2, 2, 1)


def test_round_trip_field_by_field(tmp_path):
    a = small()
    a.save(tmp_path / "a")
    assert sorted(os.listdir(tmp_path / "a")) == sorted([JSON_FILE, ARRAYS_FILE, MANIFEST])
    assert_same(a, Artifact.load(tmp_path / "a"))
    r = random_artifact(np.random.default_rng(0), [12, 9, 7, 4], bits=4, steps=[3, 5, 2], delay=2)
    r.save(tmp_path / "r")
    assert_same(r, Artifact.load(tmp_path / "r"))


def test_save_replaces_an_artifact_but_not_other_dirs(tmp_path):
    small().save(tmp_path / "a")
    b = small(input_steps=7)
    b.save(tmp_path / "a")
    assert Artifact.load(tmp_path / "a").input_steps == 7
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        small().save(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["a", "other"]


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    small().save(tmp_path / "old")
    monkeypatch.setattr(art_mod.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        small().save(tmp_path / "new")
    with pytest.raises(OSError, match="disk full"):
        small(input_steps=9).save(tmp_path / "old")
    assert sorted(os.listdir(tmp_path)) == ["old"]
    monkeypatch.undo()
    assert Artifact.load(tmp_path / "old").input_steps == 4


def test_unserialisable_meta_is_refused_before_writing(tmp_path):
    with pytest.raises(ArtifactError, match="meta is not JSON"):
        small(meta={"x": object()}).save(tmp_path / "a")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "a"
    small().save(path)
    return path


def rewrite_json(path, edit):
    doc = json.loads((path / JSON_FILE).read_text())
    edit(doc)
    (path / JSON_FILE).write_text(json.dumps(doc))


def rewrite_arrays(path, edit):
    with np.load(path / ARRAYS_FILE) as npz:
        arrays = dict(npz)
    edit(arrays)
    np.savez(path / ARRAYS_FILE, **arrays)


@pytest.mark.parametrize("damage, file, pattern", [
    (lambda p: (p / JSON_FILE).unlink(), JSON_FILE, "not found"),
    (lambda p: (p / ARRAYS_FILE).unlink(), ARRAYS_FILE, "not found"),
    (lambda p: (p / JSON_FILE).write_text("{not json"), JSON_FILE, "unreadable"),
    (lambda p: (p / ARRAYS_FILE).write_bytes(b"garbage"), ARRAYS_FILE, "unreadable"),
    (lambda p: rewrite_json(p, lambda d: d.pop("input_steps")), JSON_FILE, r"missing keys \['input_steps'\]"),
    (lambda p: rewrite_json(p, lambda d: d["layers"][0].pop("readout")), JSON_FILE, r"layer 0 \('h'\): missing"),
    (lambda p: rewrite_json(p, lambda d: d["layers"][0].update(window_steps=0)), JSON_FILE,
     r"layer 0 \('h'\): window_steps must be"),
    (lambda p: rewrite_json(p, lambda d: d.update(overflow="explode")), JSON_FILE, "overflow must be"),
    (lambda p: rewrite_json(p, lambda d: d.update(version=99)), JSON_FILE, "version"),
    (lambda p: rewrite_arrays(p, lambda a: a.pop("layer1.bias")), ARRAYS_FILE, "'layer1.bias' missing"),
    (lambda p: rewrite_arrays(p, lambda a: a.update({"layer0.weight": a["layer0.weight"] * 0.5})), ARRAYS_FILE,
     "layer 'h': weight has dtype float64"),
    (lambda p: rewrite_arrays(p, lambda a: a.update({"layer1.weight": a["layer1.weight"][:, :2]})), ARRAYS_FILE,
     r"dense \{in: 3, out: 2\} does not match the weight shape \(2, 2\)"),
    (lambda p: rewrite_json(p, lambda d: d["layers"][1]["synapse"].update({"in": 2})), ARRAYS_FILE,
     r"dense \{in: 2, out: 2\} does not match"),
    (lambda p: rewrite_json(p, lambda d: d["layers"][0].update(ops=[{"kind": "maxpool"}])), ARRAYS_FILE,
     "an op is {kind: flatten | sumpool"),
    (lambda p: rewrite_json(p, lambda d: d.update(synaptic_delay=1000000)), JSON_FILE,
     r"synaptic_delay must be an integer in \[1, 62\]"),
    (lambda p: rewrite_json(p, lambda d: d.update(layers="x")), JSON_FILE, "layers must be a non-empty list"),
    (lambda p: (p / ARRAYS_FILE).write_bytes((p / ARRAYS_FILE).read_bytes()[:60]), ARRAYS_FILE, "unreadable"),
    (lambda p: rewrite_arrays(p, lambda a: a.update({"layer0.slope": np.array([1, 0, 3])})), ARRAYS_FILE,
     "layer 'h': slope of neuron 1 is 0"),
    (lambda p: rewrite_arrays(p, lambda a: a.update({"layer0.bias": np.zeros(4, dtype=np.int64)})), ARRAYS_FILE,
     r"layer 'h': bias has shape \(4,\)"),
])
def test_corrupted_artifact_names_file_and_layer(saved, damage, file, pattern):
    damage(saved)
    with pytest.raises(ArtifactError, match=pattern) as err:
        Artifact.load(saved)
    assert str(err.value).startswith(str(saved / file))


def test_missing_directory():
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        Artifact.load("/nonexistent/artifact")


@pytest.mark.parametrize("changes, pattern", [
    (dict(layers=[]), "non-empty list"),
    (dict(input_shape=(3,)), r"layer 'h': takes shape \(2,\) \(2 inputs\) but the input gives shape \(3,\)"),
    (dict(synaptic_delay=0), "synaptic_delay must be"),
    (dict(membrane_bits=64), "membrane_bits must be"),
])
def test_constructor_checks(changes, pattern):
    with pytest.raises(ArtifactError, match=pattern):
        small(**changes)


def test_readout_must_be_unique_and_last():
    a = small()
    with pytest.raises(ArtifactError, match="exactly one read-out"):
        replace(a, layers=a.layers[::-1])
    with pytest.raises(ArtifactError, match="exactly one read-out"):
        replace(a, layers=[a.layers[0]])
    with pytest.raises(ArtifactError, match="read-out has no slope"):
        replace(a.layers[1], slope=np.ones(2, dtype=np.int64))
    with pytest.raises(ArtifactError, match="hidden layer needs a slope"):
        replace(a.layers[0], slope=None)


def test_check_weight_range_names_layer_and_neuron():
    a = small()
    a.layers[0].weight[1, 0] = 8            # 4-bit signed: [-8, 7]
    with pytest.raises(ArtifactError, match=r"layer 'h' neuron 1: weight 8 \(input 0\) is outside the 4-bit"):
        check(a)


def test_check_membrane_names_layer_neuron_bound_and_limit():
    a = small(membrane_bits=6)              # limit 31
    # layer h neuron 1: (|3| + |-1|) * T_0 = 16 during integration, + sigma T_1 = 10 firing -> 26;
    # neuron 2: 2 * 4 + 3 * 5 = 23; read-out neuron 1: (1 + 2 + 5) * 5 = 40 > 31
    with pytest.raises(ArtifactError, match=r"layer 'out' neuron 1: membrane worst case 40 exceeds the 6-bit "
                                            r"signed limit 31"):
        check(a)
    assert len(violations(a)) == 1
    check(small(membrane_bits=7))


def test_check_lists_the_first_few():
    a = replace(random_artifact(np.random.default_rng(0), [20, 10, 5], bits=8), weight_bits=1)   # [-1, 0]
    with pytest.raises(ArtifactError) as err:
        check(a)
    msg = str(err.value)
    n = len(violations(a))
    assert n > 5 and msg.startswith(f"{n} hardware violation(s)") and f"... and {n - 5} more" in msg


def test_input_activations_validation():
    a = small()
    assert a.input_activations(np.array([[0.0, 4.0]])).dtype == np.int64
    for bad, pattern in [(np.zeros((2, 3)), "shape"), (np.array([[0.5, 1]]), "integers"),
                         (np.array([[5, 0]]), r"\[0, T_0=4\]"), (np.array([[-1, 0]]), r"\[0, T_0=4\]")]:
        with pytest.raises(ValueError, match=pattern):
            a.input_activations(bad)


def test_random_artifact_passes_its_checks():
    for seed in range(5):
        check(random_artifact(np.random.default_rng(seed), [20, 10, 5], bits=3, steps=[4, 6]))


def test_artifact_and_emulator_import_without_torch():
    code = ("import sys, hwtune.artifact, hwtune.backends.emulator; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_worst_case_beyond_int64_is_a_violation_not_a_wrap():
    # (|2^31 - 1| + |-(2^31 - 1)| + |2^47|) * T_0 = (2^32 - 2 + 2^47) 2^16 ~ 2^63 would wrap to a negative int64
    a = small(weight_bits=32, membrane_bits=63, input_steps=2 ** 16)
    a.layers[0].weight[0] = [2 ** 31 - 1, -(2 ** 31 - 1)]
    a.layers[0].bias[0] = 2 ** 47
    with pytest.raises(ArtifactError, match=r"layer 'h' neuron 0: membrane worst case 9223372036854775807"):
        check(a)


def conv_artifact(seed=0, **kw):
    return random_conv_artifact(np.random.default_rng(seed), (2, 9, 7),
                                [("conv", 4, 3, 1, 1), ("pool", 2), ("conv", 5, 3, 2, 1), ("dense", 6)], 3, **kw)


def test_conv_artifact_round_trips_with_its_graph(tmp_path):
    a = conv_artifact(bits=4, steps=[5, 4, 6, 3])
    kinds = [(type(l.synapse).__name__, [type(op).__name__ for op in l.ops]) for l in a.layers]
    assert kinds == [("Conv2d", []), ("Conv2d", ["SumPool"]), ("Dense", ["Flatten"]), ("Dense", [])]
    assert [l.out_shape for l in a.layers] == [(4, 9, 7), (5, 2, 2), (6,), (3,)]
    assert a.layers[1].stage.gain == 4 and a.layers[1].bias.shape == (5,)
    a.save(tmp_path / "c")
    doc = json.loads((tmp_path / "c" / JSON_FILE).read_text())
    assert doc["version"] == 4 and doc["layers"][1]["ops"] == [{"kind": "sumpool", "kernel": 2}]
    assert [d["inputs"] for d in doc["layers"]] == [["input"], ["conv2d1"], ["conv2d2"], ["dense3"]]
    assert doc["layers"][1]["synapse"] == {"kind": "conv2d", "in_shape": [4, 4, 3], "out_channels": 5, "kernel": 3,
                                           "stride": 2, "padding": 1}
    assert_same(a, Artifact.load(tmp_path / "c"))


def test_format_2_artifacts_load_as_chains(tmp_path):
    """Version 2 layers have no inputs: each reads the layer before it (the first, the sample)."""
    a = conv_artifact(bits=4, steps=[5, 4, 6, 3])
    a.save(tmp_path / "v2")
    doc = json.loads((tmp_path / "v2" / JSON_FILE).read_text())
    doc["version"] = 2
    for d in doc["layers"]:
        del d["inputs"]
    (tmp_path / "v2" / JSON_FILE).write_text(json.dumps(doc))
    old = Artifact.load(tmp_path / "v2")
    assert old.edges() == [("input",), ("conv2d1",), ("conv2d2",), ("dense3",)]
    assert_same(a, old)


def _edges(a: Artifact, inputs: list) -> Artifact:
    """``a`` with its layers' inputs replaced (copies of the layers)."""
    return replace(a, layers=[replace(l, inputs=i) for l, i in zip(a.layers, inputs)])


@pytest.mark.parametrize("inputs, message", [
    ([["input"], ["nowhere"]], "input 'nowhere' is not the sample"),
    ([["out"], ["h"]], "input 'out' is not the sample"),                  # an edge to a later layer: no cycle
    ([["input"], ["h", "h"]], r"takes 1 input\(s\), got 2"),                 # arity
    ([["input"], []], r"takes 1 input\(s\), got 0"),
    ([["input"], "h"], "inputs must be a list of layer names"),
])
def test_the_layer_graph_is_checked(inputs, message):
    with pytest.raises(ArtifactError, match=message):
        _edges(small(), inputs)


def test_a_layer_that_feeds_no_layer_is_refused():
    """Two hidden layers of the same shape: the read-out may not skip the second (a dead end)."""
    square = dict(weight=np.eye(2, dtype=np.int64), bias=np.zeros(2, dtype=np.int64), slope=np.ones(2, dtype=np.int64),
                  window_steps=4, readout=False)
    layers = [dense_layer(name="a", **square), dense_layer(name="b", **square),
              replace(dense_layer(name="out", **{**square, "slope": None, "window_steps": None, "readout": True}),
                      inputs=("a",))]
    with pytest.raises(ArtifactError, match=r"\['b'\] feed\(s\) no layer"):
        Artifact(layers=layers, input_shape=(2,), input_steps=4, synaptic_delay=1, weight_bits=4, membrane_bits=16)


def test_the_graph_is_checked_on_load_and_no_layer_is_named_input(tmp_path):
    small().save(tmp_path / "a")
    rewrite_json(tmp_path / "a", lambda d: d["layers"][1].update(inputs=["h2"]))
    with pytest.raises(ArtifactError, match=r"artifact.json: layer 'out': input 'h2' is not the sample"):
        Artifact.load(tmp_path / "a")
    rewrite_json(tmp_path / "a", lambda d: d["layers"][1].update(inputs=None))
    with pytest.raises(ArtifactError, match=r"artifact.json: layer 1 \('out'\): inputs must be a list of layer names"):
        Artifact.load(tmp_path / "a")
    with pytest.raises(ArtifactError, match="a layer cannot bear it"):
        dense_layer(name="input", weight=np.ones((2, 2), dtype=np.int64), bias=np.zeros(2, dtype=np.int64), slope=None,
                    window_steps=None, readout=True)
    explicit = _edges(small(), [["input"], ["h"]])          # explicit edges equal to the default ones
    assert explicit.edges() == small().edges() == [("input",), ("h",)]


def test_a_layer_with_default_inputs_serves_in_several_artifacts():
    """Default edges are the artifact's (Artifact.edges), never written onto the layers: the same
    read-out may follow a renamed hidden layer, or another one, in a second artifact."""
    a = small()
    renamed = replace(a, layers=[replace(a.layers[0], name="hidden"), a.layers[1]])
    assert renamed.edges() == [("input",), ("hidden",)] and a.layers[1].inputs is None
    assert a.edges() == [("input",), ("h",)]


def test_conv_layer_kinds_must_fit_their_inputs():
    q = np.ones((4, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ArtifactError, match="conv2d takes input shape"):
        ArtifactLayer(name="c", synapse=Conv2d(weight=q, in_shape=(2, 8, 8)), ops=(SumPool(kernel=2),),
                      in_shape=(2, 8, 8), bias=np.zeros(4), slope=np.ones(4), window_steps=4, readout=False)
    with pytest.raises(ArtifactError, match=r"bias has shape \(3,\), expected \(4,\)"):
        ArtifactLayer(name="c", synapse=Conv2d(weight=q, in_shape=(2, 8, 8)), in_shape=(2, 8, 8),
                      bias=np.zeros(3, dtype=np.int64), slope=np.ones(4, dtype=np.int64), window_steps=4, readout=False)
    with pytest.raises(ArtifactError, match="channel 1 is 0"):
        ArtifactLayer(name="c", synapse=Conv2d(weight=q, in_shape=(2, 8, 8)), in_shape=(2, 8, 8),
                      bias=np.zeros(4, dtype=np.int64), slope=np.array([1, 0, 1, 1]), window_steps=4, readout=False)


def test_worst_case_counts_pooled_inputs_per_channel():
    """|V| <= (gain sum|q| + |beta|) T_in per channel: a 2x2 sum pool quadruples what one tap can add."""
    q = np.zeros((2, 1, 3, 3), dtype=np.int64)
    q[0, 0, 1, 1], q[1, 0] = 3, -1                     # channel 0: sum |q| = 3; channel 1: 9
    layer = ArtifactLayer(name="c", synapse=Conv2d(weight=q, in_shape=(1, 4, 4), padding=1), ops=(SumPool(kernel=2),),
                          in_shape=(1, 8, 8), bias=np.array([2, -5]), slope=None, window_steps=None, readout=True)
    a = Artifact(layers=[layer], input_shape=(1, 8, 8), input_steps=10, synaptic_delay=1, weight_bits=4,
                 membrane_bits=16)
    assert a.state_bounds()[0].tolist() == [(4 * 3 + 2) * 10, (4 * 9 + 5) * 10]
    # the bound is reached: every input at T_0 = 10
    V = layer.potential(np.full((1, 64), 10), 10).reshape(2, 16)
    assert V[0].max() == (4 * 3 + 2) * 10 and -V[1].min() == (4 * 9 + 5) * 10


def test_hwtune_01_artifacts_still_load(tmp_path):
    """Format version 1 (dense matrices only) loads as dense layers and runs the same."""
    from hwtune.backends.emulator import emulate
    a = small()
    a.save(tmp_path / "v1")
    doc = json.loads((tmp_path / "v1" / JSON_FILE).read_text())
    doc["version"] = 1
    for d, layer in zip(doc["layers"], a.layers):
        for key in ("in_shape", "ops", "synapse"):
            del d[key]
        d["shape"] = [layer.n_out, layer.n_in]
    (tmp_path / "v1" / JSON_FILE).write_text(json.dumps(doc))
    old = Artifact.load(tmp_path / "v1")
    k0 = np.array([[4, 0], [1, 3]])
    assert np.array_equal(emulate(old, k0).logits, emulate(a, k0).logits)
    doc["version"] = 7
    (tmp_path / "v1" / JSON_FILE).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"export the model again with this hwtune \(`hwtune export MODEL`\)"):
        Artifact.load(tmp_path / "v1")


@pytest.mark.parametrize("synapse", ["dense", "conv2d"])
def test_two_sum_poolings_fold_into_one_block_sum(synapse):
    """Two sum poolings before a synapse (kernels 2 and 2 on a 9 x 11 map, floor mode: 4 x 5, then
    2 x 2) are one 4 x 4 block sum in the explicit matrix (hwtune.layers.stage) and in the mapper's
    kernel: matrix @ k equals q applied to block sums taken here with numpy, and equals the layer's V."""
    rng = np.random.default_rng(5)
    k = rng.integers(0, 7, size=(4, 2, 9, 11))
    blocks = k[:, :, :8, :8].reshape(4, 2, 2, 4, 2, 4).sum(axis=(3, 5))            # (B, 2, 2, 2)
    if synapse == "dense":
        q = rng.integers(-7, 8, size=(3, 8))
        syn, ops, expected = Dense(weight=q), (SumPool(2), SumPool(2), Flatten()), blocks.reshape(4, 8) @ q.T
    else:
        q = rng.integers(-7, 8, size=(3, 2, 2, 2))
        syn, ops = Conv2d(weight=q, in_shape=(2, 2, 2)), (SumPool(2), SumPool(2))
        expected = blocks.reshape(4, 8) @ q.reshape(3, 8).T
    layer = ArtifactLayer(name="out", synapse=syn, bias=np.zeros(3, dtype=np.int64), slope=None, window_steps=None,
                          readout=True, ops=ops, in_shape=(2, 9, 11))
    assert layer.stage.gain == 16
    m = layer.stage.matrix()
    assert np.array_equal(m @ k.reshape(4, -1).T, expected.T)
    assert np.array_equal(layer.potential(k.reshape(4, -1), 6).reshape(4, -1), expected)
    if synapse == "conv2d":
        assert layer.stage.kernel_bits(4) == 2 * (2 * 4) ** 2 * 4     # C_in (K p)^2 bits


def test_fan_out_through_pooling_equals_the_explicit_matrix():
    """Synaptic events per presynaptic spike (ArtifactLayer.fan_out) = nonzeros of its column in
    the explicit synapse matrix (hwtune.layers.stage), pooling and borders included."""
    a = conv_artifact(seed=3)
    for layer in a.layers:
        m = layer.stage.matrix()
        columns = np.count_nonzero(m, axis=0) if isinstance(m, np.ndarray) else np.diff(m.tocsc().indptr)
        assert np.array_equal(layer.fan_out()[0], columns), layer.name
        rows = np.count_nonzero(m, axis=1) if isinstance(m, np.ndarray) else np.diff(m.indptr)
        assert layer.fan_in().max() >= rows.max(), layer.name      # fan_in: an interior neuron's
        if layer.name in ("conv2d1", "dense3", "dense4"):               # layers that have interior neurons
            assert layer.fan_in().max() == rows.max(), layer.name

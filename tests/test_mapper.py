"""The Loihi 2 resource map: cores, chips, memory, latency and energy by hand on small cases, and
refusals that name the layer and the resource."""
from dataclasses import replace

import numpy as np
import pytest

from hwtune.artifact import Artifact, ArtifactError, ArtifactLayer, dense_layer
from hwtune.random_artifacts import random_conv_artifact
from hwtune.layers import Conv2d, Dense, Flatten, SumPool
from hwtune.mapper import map_layers, resource_map, table
from hwtune.target import ChipSection, load_target

CHIP = ChipSection(cores_per_chip=4, max_chips=4, neurons_per_core=100, synaptic_memory_bits=10_000, synapse_bits=10,
                   conv_weight_sharing=True, step_time_us=2.0, energy_per_synaptic_event_pj=10.0,
                   energy_per_neuron_update_pj=1.0, static_power_w=0.5)


def net() -> Artifact:
    """conv 1->8 3x3 pad 1 on 12x12 (1152 neurons), sum pool 2, conv 8->4 3x3 on 6x6, flatten,
    dense 64 -> 30 -> read-out 5; 4-bit weights, every weight nonzero."""
    zeros, ones = (lambda n: np.zeros(n, dtype=np.int64)), (lambda n: np.ones(n, dtype=np.int64))
    conv1 = Conv2d(weight=np.ones((8, 1, 3, 3), dtype=np.int64), in_shape=(1, 12, 12), padding=1)
    conv2 = Conv2d(weight=np.ones((4, 8, 3, 3), dtype=np.int64), in_shape=(8, 6, 6))
    layers = [ArtifactLayer(name="c1", synapse=conv1, bias=zeros(8), slope=ones(8), window_steps=4,
                            readout=False),
              ArtifactLayer(name="c2", synapse=conv2, ops=(SumPool(kernel=2),), in_shape=(8, 12, 12),
                            bias=zeros(4), slope=ones(4), window_steps=4, readout=False),
              ArtifactLayer(name="d3", synapse=Dense(weight=np.ones((30, 64), dtype=np.int64)), ops=(Flatten(),),
                            in_shape=(4, 4, 4), bias=zeros(30), slope=ones(30), window_steps=4, readout=False),
              dense_layer("out", np.ones((5, 30), dtype=np.int64), zeros(5), None, None, True)]
    return Artifact(layers=layers, input_shape=(1, 12, 12), input_steps=4, synaptic_delay=1, weight_bits=4,
                    membrane_bits=24)


def test_cores_memory_and_inputs_by_hand():
    maps = {m.name: m for m in map_layers(net(), CHIP)}
    c1 = maps["c1"]        # kernel 1x3x3x4 bits = 36 bits/channel; 8 channels per core, 100 // 8 = 12 positions
    assert (c1.neurons, c1.neurons_per_core, c1.cores, c1.memory_bits) == (1152, 96, 12, 12 * 8 * 36)
    assert c1.stored_as == "shared kernels" and c1.fan_in == 9
    c2 = maps["c2"]        # pool folded: kernel 8 x 6 x 6 x 4 bits = 1152 bits/channel, 4 channels; 16 positions
    assert (c2.neurons, c2.cores, c2.memory_bits, c2.fan_in) == (64, 1, 4 * 1152, 8 * 9 * 4)
    d3 = maps["d3"]        # 64 synapses x 10 bits = 640 bits per neuron: 15 per core by memory
    assert (d3.neurons_per_core, d3.cores, d3.synapses, d3.memory_bits, d3.axons_per_core) == (15, 2, 1920, 19200, 64)
    assert maps["out"].cores == 1


def test_latency_and_energy_estimate():
    r = resource_map(net(), CHIP, events_per_sample=1000.0, samples=10)
    t = r["total"]
    assert t["cores"] == 12 + 1 + 2 + 1 and t["chips"] == 4 and t["neurons"] == 1152 + 64 + 30 + 5
    assert t["latency_steps"] == 4 * 4 + 4 and t["latency_us"] == 40.0
    updates = t["neurons"] * 20
    assert t["dynamic_energy_uj"] == pytest.approx((1000 * 10.0 + updates * 1.0) / 1e6)
    assert t["static_energy_uj"] == pytest.approx(0.5 * 4 * 40.0)
    assert any("chips: 4" in line for line in table(r))
    lines = table(r)
    dynamic = next(i for i, line in enumerate(lines) if "energy" in line)     # the headline: dynamic energy
    assert lines[dynamic].startswith("dynamic energy per inference: 35 nJ")      # 1000 x 10 pJ + 25,020 x 1 pJ
    assert lines[dynamic + 1].startswith("static: 0.5 W per chip x 4 chip(s)") and "whatever the net" in lines[dynamic + 1]


def test_what_does_not_fit_is_refused_naming_layer_and_resource():
    with pytest.raises(ArtifactError, match=r"layer 'c2' does not fit the chip: the net needs 16 cores, 4 chips; the "
                                            r"target has 3 chip\(s\) of 4 cores \(chip.max_chips\)"):
        map_layers(net(), replace(CHIP, max_chips=3))
    with pytest.raises(ArtifactError, match=r"layer 'c2' does not fit the chip: the kernel of one output channel needs "
                                            r"1152 bits, more than a core's 1000 \(chip.synaptic_memory_bits\)"):
        map_layers(net(), replace(CHIP, synaptic_memory_bits=1000, max_chips=100))
    # c2 (pooling folded): one output position reads 8 channels x 6 x 6 = 288 inputs
    with pytest.raises(ArtifactError, match=r"layer 'c2' does not fit the chip: one output position of one channel reads 288 inputs, "
                                            r"more than 50 per core \(chip.max_axons_per_core\)"):
        map_layers(net(), replace(CHIP, max_axons_per_core=50, max_chips=100))
    from hwtune.mapper import _explicit_layer
    with pytest.raises(ArtifactError, match=r"layer 'd3' does not fit the chip: its neurons read 64 inputs, more than "
                                            r"50 per core \(chip.max_axons_per_core\)"):
        _explicit_layer(net().layers[2], replace(CHIP, max_axons_per_core=50))
    with pytest.raises(ArtifactError, match=r"layer 'c1' does not fit the chip: one neuron's 9 synapses need 90 bits"):
        map_layers(net(), replace(CHIP, conv_weight_sharing=False, synaptic_memory_bits=80, max_chips=100))


def test_a_cores_clock_inputs_count_against_the_axon_limit():
    """d3 reads its 64 inputs and, in a build with a clock of 5 rows, those 5 too: 69 > 66."""
    from hwtune.mapper import _explicit_layer
    d3 = net().layers[2]
    assert _explicit_layer(d3, replace(CHIP, max_axons_per_core=69), clock_rows=5).axons_per_core == 69
    with pytest.raises(ArtifactError, match=r"layer 'd3' does not fit the chip: its neurons read 69 inputs, more than 66"):
        _explicit_layer(d3, replace(CHIP, max_axons_per_core=66), clock_rows=5)


def test_axon_limit_shrinks_conv_tiles():
    from hwtune.mapper import _shared_kernel_layer
    c1 = net().layers[0]
    loose = _shared_kernel_layer(c1, CHIP, 4)
    tight = _shared_kernel_layer(c1, replace(CHIP, max_axons_per_core=20), 4)
    assert tight.axons_per_core <= 20 < loose.axons_per_core and tight.cores > loose.cores


def test_loihi2_maps_the_stock_build_of_a_conv_net():
    """The Loihi 2 map describes the processes built (hwtune.backends.lava.build): convolutions as
    kernels stored once (Lava's Conv, a 2x2 pooling folded in), the dense layer after a pooling as
    explicit synapses in Sparse, a clock input per clock step and its synapses counted, and one
    synaptic event per synapse per inference (every neuron spikes once)."""
    from hwtune.backends.lava.build import calibrate, costs
    rng = np.random.default_rng(0)
    a = random_conv_artifact(rng, (1, 28, 28),
                             [("conv", 8, 3, 1, 1), ("conv", 8, 3, 1, 1), ("pool", 2), ("conv", 16, 3, 1, 1),
                              ("conv", 16, 3, 1, 1), ("pool", 2), ("dense", 32)], 10, bits=4)
    calibrate(a, rng.integers(0, a.input_steps + 1, (8, a.n_in)), "8 random samples")
    build = costs(a)
    r = resource_map(a, load_target("loihi2").chip, events_per_sample=1234.5, samples=8, build=build)
    t = r["total"]
    # windows of 6 steps: a layer is busy 6 + 6 + 2 steps, so a new sample every 16 (latency 6 x 7 = 42):
    # 1e6 / (16 x 183 us) samples/s; the chip's events are its synapses, the model's the emulator's count
    assert (t["sample_interval_steps"], t["latency_steps"]) == (16, 42)
    assert t["throughput_samples_per_s"] == pytest.approx(341.53, abs=0.01)
    assert t["model_synaptic_events"] == 1234.5 and t["model_events_source"] == "emulator on 8 test samples"
    assert t["neurons"] == 2 * 8 * 28 * 28 + 2 * 16 * 14 * 14 + 32 + 10
    assert [m["stored_as"] for m in r["layers"]] == ["shared kernels (Conv)"] * 4 + \
        ["explicit synapses (Sparse)", "explicit synapses (Dense)"]
    # c1: 8 channels of 784 positions; 4,096 neurons per core hold 512 positions of all 8 channels
    # (kernels 8 x 36 bits and at most 12 clock synapses of 18 bits per neuron fit 1 Mbit): 2 cores
    c1 = r["layers"][0]
    assert (c1["cores"], c1["neurons_per_core"]) == (2, 4096)
    assert c1["memory_bits"] == 2 * 8 * 36 + 8 * 784 * build.clock_rows[0] * 18
    explicit = sum(int(fan.sum()) for layer in a.layers for fan in layer.fan_out())
    clock = sum(layer.n_out * rows for layer, rows in zip(a.layers, build.clock_rows))
    assert t["synapses"] == explicit + clock and t["synaptic_events"] == t["synapses"]
    assert t["clock_inputs"] == sum(build.clock_rows) and all(3 <= rows <= 12 for rows in build.clock_rows)

def test_each_layer_row_names_its_inputs():
    """The map is of the graph: a chain's rows read the layer before (the first the sample); a residual
    net's join reads both its branches, in the JSON and the printed table."""
    r = resource_map(net(), CHIP)
    assert [m["inputs"] for m in r["layers"]] == [["input"], ["c1"], ["c2"], ["d3"]]
    from graph_cases import pixels, quantized_artifact, random_graph, relu_net
    from hwtune.ttfs.convert import from_relu
    arch, shape, _ = random_graph(10)           # stem, block b0 (projection), block b1 (identity), dense
    artifact = quantized_artifact(from_relu(relu_net(arch, shape, seed=0), pixels(shape, 8, seed=0)), 4, 1, seed=0)
    rows = {m["name"]: m["inputs"] for m in resource_map(artifact, load_target("loihi2").chip)["layers"]}
    assert rows["b0"] == ["b0.conv1", "stem"] and rows["b1"] == ["b1.conv1", "b0"] and rows["b1.conv1"] == ["b0"]
    assert rows["stem"] == ["input"] and rows["fc1"] == ["b1"] and rows["out"] == ["fc1"]
    line = next(line for line in table(resource_map(artifact, load_target("loihi2").chip)) if line.startswith("b1 "))
    assert line.endswith("  b1.conv1, b0")

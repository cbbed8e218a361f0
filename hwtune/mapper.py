"""Map an artifact onto a chip's cores (target ``chip`` section) and estimate latency and energy.

Model (one layer at a time, cores are not shared between layers, the input arrives off-chip):

- A convolution on a chip with ``conv_weight_sharing`` is stored as kernels: a core holds a tile
  of output positions for a group of output channels and stores those channels' kernels once,
  C_in / g (K p)^2 weight_bits bits per channel (sum poolings folded in: the kernel grows to K p).
  Channels per core are bounded by the synaptic memory, positions per core by the neuron count;
  ``max_axons_per_core`` (the inputs a tile reads: the kind's ``tile_inputs``) shrinks the positions,
  then the channels.
- Every other layer stores each synapse explicitly, ``synapse_bits`` per nonzero weight, at the
  core of its neuron: neurons per core are bounded by the neuron count and by the synaptic memory
  its neurons' fan-in takes, and by ``max_axons_per_core`` (the inputs its neurons read: the kind's
  ``core_inputs``; a dense layer's core reads every input of the layer).
- cores = sum over layers; chips = ceil(cores / cores_per_chip), at most ``max_chips``.

A layer that cannot be placed (one channel's kernel or one neuron's synapses exceed a core's
memory, a tile reads more inputs than ``max_axons_per_core``) or a net that needs more chips is
refused with an ArtifactError naming the layer and the resource.

With a backend's ``Build`` (Lava's stock build: hwtune.backends.lava.build.costs) every layer is
stored as that build stores it: kernels where it makes a Conv process (on a chip with
``conv_weight_sharing``), else explicit synapses; plus each neuron's synapses from its clock, explicit.

Estimate per inference: latency = steps x ``step_time_us``; dynamic energy = synaptic events x
``energy_per_synaptic_event_pj`` + neuron updates (neurons x latency steps) x
``energy_per_neuron_update_pj``; static energy = ``static_power_w`` x chips x latency. Events are
counted by the emulator on test samples, or, for a build where every neuron spikes once per sample,
equal the synapses. The figures' sources (and which are estimates) are in the target file.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from hwtune.artifact import Artifact, ArtifactError, ArtifactLayer
from hwtune.target import ChipSection


@dataclass
class LayerMap:
    """Where one layer goes: neurons, cores, explicit synapses, synaptic memory (bits), the
    largest fan-in and inputs per core, how its synapses are stored, and the layers (or the
    sample, ``input``) it receives: its edges in the artifact's graph."""

    name: str
    kind: str
    neurons: int
    cores: int
    neurons_per_core: int
    synapses: int
    memory_bits: int
    fan_in: int
    axons_per_core: int
    stored_as: str
    inputs: list = field(default_factory=list)


def _fail(layer: ArtifactLayer, resource: str, detail: str):
    raise ArtifactError(f"layer {layer.name!r} does not fit the chip: {detail} ({resource})")


def _fit_axons(chip: ChipSection, count: int, reads) -> tuple[int, int]:
    """Shrink ``count`` (output positions, channels or neurons per core) by eighths until the inputs
    a core reads, ``reads(count)``, fit ``max_axons_per_core`` or count is 1. Returns (count, inputs read)."""
    limit = chip.max_axons_per_core
    while limit and count > 1 and reads(count) > limit:
        count -= max(1, count // 8)
    return count, reads(count)


def _refuse_axons(layer: ArtifactLayer, chip: ChipSection, axons: int, what: str) -> None:
    if chip.max_axons_per_core and axons > chip.max_axons_per_core:
        _fail(layer, "chip.max_axons_per_core", f"{what} {axons} inputs, more than {chip.max_axons_per_core} per core")


def _shared_kernel_layer(layer: ArtifactLayer, chip: ChipSection, weight_bits: int, clock_rows: int = 0,
                         built_as: str = "") -> LayerMap:
    """``clock_rows``: inputs of the layer's clock, each an explicit synapse to every neuron (``synapse_bits``
    each, beside the kernels in the core's memory); ``built_as``: the process holding the kernels."""
    c_out, h_o, w_o = layer.out_shape
    kernel_bits = layer.stage.kernel_bits(weight_bits)
    clock_bits = clock_rows * chip.synapse_bits
    channels = min(c_out, chip.synaptic_memory_bits // (kernel_bits + clock_bits), chip.neurons_per_core)
    if channels < 1:
        _fail(layer, "chip.synaptic_memory_bits", f"the kernel of one output channel needs {kernel_bits} bits, more "
                                                  f"than a core's {chip.synaptic_memory_bits}")

    def fit_positions(channels: int) -> tuple[int, int]:
        room = (chip.synaptic_memory_bits - channels * kernel_bits) // (channels * clock_bits) if clock_bits else h_o * w_o
        return _fit_axons(chip, min(h_o * w_o, chip.neurons_per_core // channels, room),
                          lambda p: layer.stage.tile_inputs(p, channels) + clock_rows)

    # fewer positions first; where one position still reads too much, fewer channels (a grouped conv's
    # channels of one group read only that group's inputs)
    channels, _ = _fit_axons(chip, channels, lambda c: fit_positions(c)[1])
    positions, axons = fit_positions(channels)
    _refuse_axons(layer, chip, axons, "one output position of one channel reads" if channels == 1 else
                  f"one output position of {channels} channels reads")
    cores = math.ceil(c_out / channels) * math.ceil(h_o * w_o / positions)
    clock_synapses = layer.n_out * clock_rows
    return LayerMap(layer.name, layer.synapse.kind, layer.n_out, cores, channels * positions,
                    _synapses(layer) + clock_synapses, cores * channels * kernel_bits + clock_synapses * chip.synapse_bits,
                    int(layer.fan_in().max()) + clock_rows, axons,
                    "shared kernels" + (f" ({built_as})" if built_as else ""))


def _synapses(layer: ArtifactLayer) -> int:
    """Nonzero synapses of a layer, every input's (through pooling: one per presynaptic neuron and weight)."""
    return int(sum(fan.sum() for fan in layer.fan_out()))


def _explicit_layer(layer: ArtifactLayer, chip: ChipSection, clock_rows: int = 0, built_as: str = "") -> LayerMap:
    """``clock_rows``: inputs of the layer's clock (each neuron has one synapse from each);
    ``built_as``: the process that holds the synapses, for the table."""
    fan_in = int(layer.fan_in().max()) + clock_rows
    per_neuron = max(1, fan_in) * chip.synapse_bits
    per_core = min(chip.neurons_per_core, chip.synaptic_memory_bits // per_neuron)
    if per_core < 1:
        _fail(layer, "chip.synaptic_memory_bits", f"one neuron's {fan_in} synapses need {per_neuron} bits, more than "
                                                  f"a core's {chip.synaptic_memory_bits}")
    per_core, axons = _fit_axons(chip, per_core, lambda n: layer.stage.core_inputs(n) + clock_rows)
    _refuse_axons(layer, chip, axons, "its neurons read")
    synapses = _synapses(layer) + layer.n_out * clock_rows
    return LayerMap(layer.name, layer.synapse.kind, layer.n_out, math.ceil(layer.n_out / per_core), per_core, synapses,
                    synapses * chip.synapse_bits, fan_in, axons,
                    "explicit synapses" + (f" ({built_as})" if built_as else ""))


def map_layers(artifact: Artifact, chip: ChipSection, build: "Build | None" = None) -> list[LayerMap]:
    """Cores, memory and inputs of every layer; refuses (ArtifactError) what the chip cannot hold.
    ``build``: what the backend builds beyond the artifact's synapses (Lava: a clock per layer)."""
    def place(n: int, layer: ArtifactLayer) -> LayerMap:
        built = (build.clock_rows[n], build.processes[n]) if build else ()
        kernels = build.kernels[n] if build else layer.synapse.shares_kernels
        if kernels and chip.conv_weight_sharing:
            return _shared_kernel_layer(layer, chip, artifact.weight_bits, *built)
        return _explicit_layer(layer, chip, *built)

    maps = [place(n, layer) for n, layer in enumerate(artifact.layers)]
    for m, inputs in zip(maps, artifact.edges()):
        m.inputs = list(inputs)
    budget, used = chip.cores_per_chip * chip.max_chips, 0
    for m in maps:
        used += m.cores
        if used > budget:
            raise ArtifactError(f"layer {m.name!r} does not fit the chip: the net needs {sum(x.cores for x in maps)} "
                                f"cores, {math.ceil(sum(x.cores for x in maps) / chip.cores_per_chip)} chips; the "
                                f"target has {chip.max_chips} chip(s) of {chip.cores_per_chip} cores "
                                f"(chip.max_chips); the cores run out at this layer ({m.cores} cores)")
    return maps


@dataclass
class Build:
    """What a backend builds besides the artifact's neurons and synapses, per layer: the inputs of
    its clock (host-timed spikes, one synapse to every neuron each) and the process holding its
    synapses; period_steps: the steps between samples, which are pipelined; kernels: per layer, whether
    the build stores its synapses as kernels (Lava's Conv), else explicitly. A build in which every
    neuron spikes exactly once per sample (hwtune.backends.lava.build.costs) takes one synaptic
    event per synapse per inference; ``source`` says so."""

    clock_rows: list[int]
    processes: list[str]
    source: str
    period_steps: int
    kernels: list[bool]


def resource_map(artifact: Artifact, chip: ChipSection, events_per_sample: float | None = None,
                 samples: int | None = None, build: Build | None = None) -> dict:
    """The map of every layer, the totals, and the latency and energy estimate per inference
    (energy only when ``events_per_sample``, counted by the emulator on ``samples`` test samples,
    or from ``build``, the backend's build; hwtune.workflow.export_model passes it for Lava). With a
    build the energy is the chip's (its events); the emulator's count is kept as
    ``model_synaptic_events``; samples are pipelined: ``sample_interval_steps`` and
    ``throughput_samples_per_s`` at the chip's step time."""
    layers = map_layers(artifact, chip, build)
    cores = sum(m.cores for m in layers)
    neurons = sum(m.neurons for m in layers)
    chips = math.ceil(cores / chip.cores_per_chip)
    latency_steps = artifact.latency_steps
    latency_us = latency_steps * chip.step_time_us
    total = {"neurons": neurons, "cores": cores, "chips": chips, "synapses": sum(m.synapses for m in layers),
             "memory_bits": sum(m.memory_bits for m in layers), "latency_steps": latency_steps,
             "latency_us": latency_us, "neuron_updates": neurons * latency_steps,
             "static_energy_uj": chip.static_power_w * chips * latency_us}
    if build is not None:      # every neuron spikes once: one event per synapse, clock synapses included
        if events_per_sample is not None:
            total.update(model_synaptic_events=events_per_sample, model_events_source=f"emulator on {samples} test samples")
        events_per_sample, source = total["synapses"], build.source
        total.update(clock_inputs=sum(build.clock_rows), sample_interval_steps=build.period_steps,
                     throughput_samples_per_s=1e6 / (build.period_steps * chip.step_time_us))
    else:
        source = f"emulator on {samples} test samples"
    if events_per_sample is not None:
        dynamic_pj = events_per_sample * chip.energy_per_synaptic_event_pj + \
            total["neuron_updates"] * chip.energy_per_neuron_update_pj
        total.update(synaptic_events=events_per_sample, events_source=source, dynamic_energy_uj=dynamic_pj / 1e6,
                     energy_uj=dynamic_pj / 1e6 + total["static_energy_uj"])
    return {"layers": [asdict(m) for m in layers], "total": total, "chip": chip.to_dict()}


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def _joules(uj: float) -> str:
    for unit, scale in (("J", 1e6), ("mJ", 1e3), ("uJ", 1.0), ("nJ", 1e-3)):
        if abs(uj) >= scale:
            return f"{uj / scale:.3g} {unit}"
    return f"{uj * 1e6:.3g} pJ"


def table(resources: dict) -> list[str]:
    """The resource map as text lines (the export prints them): a row per layer, its name column as
    wide as the longest name, ending with the layer's inputs (the graph's edges)."""
    w = max([10] + [len(m["name"]) for m in resources["layers"]])
    stored = max([9] + [len(m["stored_as"]) for m in resources["layers"]])
    lines = [f"{'layer':{w}s} {'kind':8s} {'neurons':>9s} {'cores':>6s} {'synapses':>10s} {'memory':>11s} "
             f"{'fan-in':>7s} {'inputs/core':>11s}  {'stored as':{stored}s}  inputs"]
    for m in resources["layers"]:
        lines.append(f"{m['name']:{w}s} {m['kind']:8s} {m['neurons']:9d} {m['cores']:6d} {_si(m['synapses']):>10s} "
                     f"{_si(m['memory_bits']) + 'bit':>11s} {m['fan_in']:7d} {m['axons_per_core']:11d}  "
                     f"{m['stored_as']:{stored}s}  {', '.join(m.get('inputs', []))}")
    t, chip = resources["total"], resources["chip"]
    lines.append(f"{'total':{w}s} {'':8s} {t['neurons']:9d} {t['cores']:6d} {_si(t['synapses']):>10s} "
                 f"{_si(t['memory_bits']) + 'bit':>11s}")
    lines.append(f"chips: {t['chips']} of at most {chip['max_chips']} ({chip['cores_per_chip']} cores each); latency "
                 f"{t['latency_steps']} steps = {t['latency_us'] / 1000:.3g} ms at {chip['step_time_us']:g} us/step")
    if "clock_inputs" in t:
        lines.append(f"clock: {t['clock_inputs']} host-timed inputs, one synapse to every neuron of their layer each "
                     f"(counted above); samples pipelined, a new one every {t['sample_interval_steps']} steps: "
                     f"{t['throughput_samples_per_s']:.3g} samples/s")
    if "model_synaptic_events" in t:
        lines.append(f"synaptic events per inference: {_si(t['synaptic_events'])} on the chip, "
                     f"{_si(t['model_synaptic_events'])} in the model "
                     f"({t['synaptic_events'] / t['model_synaptic_events']:.2f}x; {t['model_events_source']})")
    if "energy_uj" in t:
        lines += energy_lines(t, chip)
    return lines


def energy_lines(t: dict, chip: dict) -> list[str]:
    """Dynamic energy per inference first (what the net's spikes cost), then the chip's static power,
    which does not depend on the net (it is whole chips, however few cores the net uses)."""
    return [f"dynamic energy per inference: {_joules(t['dynamic_energy_uj'])} ({_si(t['synaptic_events'])} synaptic "
            f"events, {t['events_source']}; {_si(t['neuron_updates'])} neuron updates)",
            f"static: {chip['static_power_w']:g} W per chip x {t['chips']} chip(s), {_joules(t['static_energy_uj'])} over "
            f"the {t['latency_us'] / 1000:.3g} ms latency, whatever the net uses of them ({t['cores']} cores of "
            f"{t['chips'] * chip['cores_per_chip']}); estimates: see the target file's sources"]

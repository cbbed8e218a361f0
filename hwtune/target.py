"""Hardware targets: YAML data (``targets/*.yaml``, shipped in the wheel: hwtune.bundled) read into a validated :class:`TargetSpec`.

A target is data, not code: the backend that runs it, the weight format, time-grid limits, state
widths, synaptic delay, read-out mode and, optionally, the chip's resources (``chip``: cores,
neurons and synaptic memory per core, time per step, energy per event; used by hwtune.mapper)
and its device noise (``noise``: hwtune.device_noise; evaluating on the target applies it).
Every section is a self-validating settings dataclass (hwtune.settings); errors name the file and key.
A model and an artifact record the whole spec (:meth:`TargetSpec.to_dict`), not just its name,
so a changed or look-alike target file is caught (:func:`differences`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from hwtune.bundled import bundled_dir
from hwtune.settings import Settings, setting
from hwtune.errors import ConfigError, HwtuneError
from hwtune.device_noise import NoiseSpec
from hwtune.numerics import (BIAS_BITS, DEFAULT_BIAS_BITS, DEFAULT_SCALE_EXPONENTS, LAVA_STATE_BITS, LAVA_WEIGHT_BITS,
                             MAX_STEPS, MEMBRANE_BITS, SCALE_EXPONENTS, SYNAPTIC_DELAY, WEIGHT_BITS, WeightFormat,
                             schedule)
from hwtune.safepaths import check_name
from hwtune.yamlfile import read_yaml

TARGETS_DIR = bundled_dir("targets")
#: Backends a target may name (hwtune.backends registers their runners).
BACKENDS = ("emulator", "lava")


class TargetError(HwtuneError, ValueError):
    """A target file that is missing or malformed, or a model/artifact prepared for another target."""


@dataclass(frozen=True)
class WeightSection(Settings):
    bits: int = setting(8, "int", "widest signed weight mantissa", "bits", lo=WEIGHT_BITS[0], hi=WEIGHT_BITS[1])
    narrow: bool = setting(False, "bool", "drop the most negative mantissa (symmetric range)")
    scale: str = setting("per-layer", "str", "power-of-two scale granularity", choices=("per-layer", "per-channel"))
    exp_range: list = setting(list(DEFAULT_SCALE_EXPONENTS), "range", "allowed scale exponents [min, max]",
                            lo=SCALE_EXPONENTS[0], hi=SCALE_EXPONENTS[1])
    bias_bits: int = setting(DEFAULT_BIAS_BITS, "int", "signed per-step bias mantissa", "bits", lo=BIAS_BITS[0],
                            hi=BIAS_BITS[1])


@dataclass(frozen=True)
class TimeSection(Settings):
    input_steps: int = setting(16, "int", "default steps of the input window", "steps", lo=1, hi=MAX_STEPS)
    steps_per_layer: int = setting(16, "int", "default steps per hidden window", "steps", lo=1, hi=MAX_STEPS)
    max_steps_per_layer: int = setting(1024, "int", "longest window", "steps", lo=1, hi=MAX_STEPS)
    max_total_steps: int = setting(MAX_STEPS, "int", "longest latency (sum of windows and delays)", "steps", lo=1)


@dataclass(frozen=True)
class StateSection(Settings):
    membrane_bits: int = setting(LAVA_STATE_BITS, "int", "signed width of the current and membrane registers", "bits",
                                 lo=MEMBRANE_BITS[0], hi=MEMBRANE_BITS[1])
    overflow: str = setting("error", "str", "what export does when a register could overflow: refuse",
                            choices=("error",))


@dataclass(frozen=True)
class ChipSection(Settings):
    """Resources of one chip, for the mapper (hwtune.mapper) and its latency and energy estimate."""

    cores_per_chip: int = setting(128, "int", "neuro cores per chip", "cores", lo=1)
    max_chips: int = setting(1, "int", "chips the system has (a net needing more is refused)", "chips", lo=1)
    neurons_per_core: int = setting(8192, "int", "neurons one core holds at most", "neurons", lo=1)
    synaptic_memory_bits: int = setting(1_048_576, "int", "synaptic memory of one core", "bits", lo=1)
    synapse_bits: int = setting(18, "int", "memory of one explicitly stored synapse (weight and index)",
                                "bits", lo=1)
    conv_weight_sharing: bool = setting(True, "bool", "a core stores a convolution kernel once for all the "
                                        "positions it holds (else every synapse)")
    max_axons_per_core: int | None = setting(None, "int", "distinct presynaptic neurons one core can receive "
                                             "from", "axons", lo=1, optional=True)
    step_time_us: float = setting(1.0, "float", "wall time of one algorithmic time step", "us", gt=0)
    energy_per_synaptic_event_pj: float = setting(0.0, "float", "dynamic energy of one synaptic event", "pJ",
                                                  lo=0)
    energy_per_neuron_update_pj: float = setting(0.0, "float", "dynamic energy of one neuron update (every "
                                                 "neuron, every step)", "pJ", lo=0)
    static_power_w: float = setting(0.0, "float", "static power of one chip", "W", lo=0)


@dataclass(frozen=True)
class TargetSpec(Settings):
    name: str = setting("", "str", "target name")
    backend: str = setting("emulator", "str", "backend that runs the exported artifact", choices=BACKENDS)
    summary: str = setting("", "str", "one line for `hwtune targets`")
    aliases: list = setting([], "names", "other names the target is known by")
    weights: WeightSection = setting(WeightSection, "section", "weight format", section=WeightSection)
    time: TimeSection = setting(TimeSection, "section", "time grid", section=TimeSection)
    state: StateSection = setting(StateSection, "section", "state registers", section=StateSection)
    synaptic_delay: int = setting(1, "int", "steps from a spike to its arrival", "steps",
                                  lo=SYNAPTIC_DELAY[0], hi=SYNAPTIC_DELAY[1])
    readout: str = setting("membrane", "str", "potential of the read-out layer at the end of its window",
                           choices=("membrane",))
    chip: ChipSection | None = setting(None, "section", "chip resources (none: no resource map)",
                                       section=ChipSection, optional=True)
    noise: NoiseSpec | None = setting(None, "section", "device noise (none: a digital chip, exact)",
                                      section=NoiseSpec, optional=True)
    path: str = field(default="", compare=False)

    def check(self) -> None:
        check_name(self.name, "name")        # export's default output is MODEL.NAME
        if self.backend == "lava" and self.weights.bits > LAVA_WEIGHT_BITS:
            raise ConfigError(f"weights: bits = {self.weights.bits}: Lava's Dense and Sparse hold at most "
                              f"{LAVA_WEIGHT_BITS} bits")

    # ---- shortcuts used everywhere ----------------------------------------------------------
    @property
    def membrane_bits(self) -> int:
        return self.state.membrane_bits

    @property
    def overflow(self) -> str:
        return self.state.overflow

    @property
    def where(self) -> str:
        return self.path or f"target {self.name}"

    def check_steps(self, steps: list[int], where: str = "") -> None:
        """Refuse a time grid [T_0..T_N] this target cannot hold (before any training)."""
        for n, s in enumerate(steps):
            if not 1 <= s <= self.time.max_steps_per_layer:
                raise TargetError(f"{where}layer {n} window of {s} steps: target {self.name} allows "
                                  f"1..{self.time.max_steps_per_layer} ({self.where}: time.max_steps_per_layer)")
        total = schedule(steps, self.synaptic_delay)[-1]
        if total > self.time.max_total_steps:
            raise TargetError(f"{where}total latency {total} steps exceeds target {self.name}'s "
                              f"{self.time.max_total_steps} ({self.where}: time.max_total_steps)")

    def check_bits(self, bits: int, where: str = "") -> None:
        if not WEIGHT_BITS[0] <= bits <= self.weights.bits:
            raise TargetError(f"{where}{bits}-bit weights: target {self.name} holds {WEIGHT_BITS[0]}..{self.weights.bits} "
                              f"bits ({self.where}: weights.bits)")

    def weight_format(self, bits: int | None = None) -> WeightFormat:
        """The target's weight format, narrowed to ``bits`` mantissa bits when given."""
        w = self.weights
        if bits is not None:
            self.check_bits(bits)
        return WeightFormat(bits=w.bits if bits is None else bits, narrow=w.narrow, scale=w.scale,
                            exp_range=tuple(w.exp_range), bias_bits=w.bias_bits)


def differences(a: TargetSpec, b: TargetSpec) -> list[str]:
    """Every setting where two targets differ, as 'key: a-value vs b-value' (dotted key paths)."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    return [f"{key}: {flat_a.get(key)!r} vs {flat_b.get(key)!r}" for key in sorted(set(flat_a) | set(flat_b))
            if key not in ("summary", "aliases") and flat_a.get(key) != flat_b.get(key)]


def model_differences(a: TargetSpec, b: TargetSpec) -> list[str]:
    """:func:`differences` that change what a model prepared for the target is: all but the chip
    section, whose resource figures only the resource map reads (at export), so a model stays
    prepared for a target whose chip description was revised."""
    return [d for d in differences(a, b) if not d.startswith("chip.")]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


#: Keys a target file may leave out (everything else describes hardware and must be explicit).
_MAY_OMIT = ("summary", "aliases")


def _missing(data: dict, cls, prefix: str = "") -> list[str]:
    """Keys of ``cls`` (recursively) that ``data`` does not give: optional settings may be omitted."""
    missing = []
    for f in fields(cls):
        rule = f.metadata.get("rule")
        if rule is None or f.name in _MAY_OMIT or (rule.optional and f.name not in data):
            continue
        if f.name not in data:
            missing.append(prefix + f.name)
        elif rule.kind == "section" and isinstance(data[f.name], dict):
            missing += _missing(data[f.name], rule.section, f"{prefix}{f.name}.")
    return missing


def parse_target(data: object, path: str) -> TargetSpec:
    """Validate a target mapping (every hardware setting explicit); errors name ``path`` and the key."""
    try:
        spec = TargetSpec.from_mapping(data, path)
    except ConfigError as e:
        raise TargetError(str(e)) from None
    missing = _missing(data, TargetSpec)
    if missing:
        raise TargetError(f"{path}: missing key(s) {', '.join(missing)}")
    return TargetSpec(**{**{k: getattr(spec, k) for k in spec.field_names()}, "path": path})


def target_from_record(record, where: str) -> TargetSpec:
    """The target recorded in a model or artifact: a full spec (mapping), or, from hwtune 0.1
    files, a shipped target's name."""
    if isinstance(record, str):
        return load_target(record)
    return parse_target(record, f"{where}: target")


def load_target(name_or_path: str) -> TargetSpec:
    """A target by name or alias (``targets/NAME.yaml``) or by path to a YAML file."""
    if not isinstance(name_or_path, (str, Path)):
        raise TargetError(f"a target is a name or a YAML path, got {type(name_or_path).__name__}")
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        matches = [t for t in list_targets() if name_or_path in (t.name, *t.aliases)]
        if not matches:
            known = ", ".join(t.name for t in list_targets())
            raise TargetError(f"unknown target {name_or_path!r}; known: {known} (or give a path to a YAML file)")
        return matches[0]
    spec = _read_target(path)
    _check_not_lookalike(spec)
    return spec


def _read_target(path: Path) -> TargetSpec:
    return parse_target(read_yaml(path, TargetError, "target"), str(path))


def _check_not_lookalike(spec: TargetSpec) -> None:
    """A target file may not take the name or an alias of a shipped target unless it is that target
    (every setting equal): a 'loihi2' with another membrane width would pass for Loihi 2."""
    for shipped in list_targets():
        names = {shipped.name, *shipped.aliases}
        same_file = Path(spec.path).resolve() == Path(shipped.path).resolve()
        if (spec.name in names or names & set(spec.aliases)) and not same_file:
            diff = differences(shipped, spec)
            if diff or spec.name != shipped.name:
                raise TargetError(f"{spec.path}: takes the name {spec.name!r} (aliases {spec.aliases}) of the shipped "
                                  f"target {shipped.name!r} but differs from it ({'; '.join(diff) or 'name'}); "
                                  "give your target a name of its own")


def list_targets() -> list[TargetSpec]:
    """Every target shipped in ``targets/``, sorted by name."""
    return sorted((_read_target(p) for p in TARGETS_DIR.glob("*.yaml")), key=lambda t: t.name)

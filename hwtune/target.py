"""Hardware targets: YAML data (``targets/*.yaml``) read into a validated :class:`TargetSpec`.

A target is data, not code: weight format, time grid limits, state widths, synaptic delay,
fan-in and neuron-count limits and read-out mode. Errors name the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hwtune.numerics import WeightFormat
from hwtune.yamlfile import read_yaml

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


class TargetError(ValueError):
    """A target file that is missing or malformed; the message names the file and key."""


# key path -> (type, check, description of the allowed values)
_SCHEMA = {
    "name": (str, lambda v: bool(v), "a non-empty string"),
    "summary": (str, lambda v: True, "a string"),
    "aliases": (list, lambda v: all(isinstance(a, str) for a in v), "a list of names"),
    "backend": (str, lambda v: v in ("loihi", "emulator"), "'loihi' or 'emulator'"),
    "weights.bits": (int, lambda v: 2 <= v <= 16, "an integer in 2..16"),
    "weights.narrow": (bool, lambda v: True, "true or false"),
    "weights.scale": (str, lambda v: v in ("per-layer", "per-channel"), "'per-layer' or 'per-channel'"),
    "weights.exp_range": (list, lambda v: len(v) == 2 and all(isinstance(e, int) for e in v) and v[0] <= v[1],
                          "[min_exp, max_exp] integers"),
    "weights.bias_bits": (int, lambda v: 2 <= v <= 32, "an integer in 2..32"),
    "time.input_steps": (int, lambda v: v >= 1, "a positive integer"),
    "time.steps_per_layer": (int, lambda v: v >= 1, "a positive integer"),
    "time.max_steps_per_layer": (int, lambda v: v >= 1, "a positive integer"),
    "time.max_total_steps": (int, lambda v: v >= 1, "a positive integer"),
    "state.membrane_bits": (int, lambda v: 8 <= v <= 62, "an integer in 8..62"),
    "state.overflow": (str, lambda v: v == "error", "'error' (export refuses what could overflow)"),
    "synaptic_delay": (int, lambda v: v >= 1, "an integer >= 1"),
    "limits.max_fan_in": (int, lambda v: v >= 1, "a positive integer"),
    "limits.max_neurons_per_layer": (int, lambda v: v >= 1, "a positive integer"),
    "readout": (str, lambda v: v == "membrane", "'membrane' (potential at the end of the read-out window)"),
}
_OPTIONAL = {"aliases", "summary"}


@dataclass(frozen=True)
class TargetSpec:
    name: str
    backend: str
    weights: WeightFormat
    input_steps: int
    steps_per_layer: int
    max_steps_per_layer: int
    max_total_steps: int
    membrane_bits: int
    overflow: str
    synaptic_delay: int
    max_fan_in: int
    max_neurons_per_layer: int
    readout: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    path: str = field(default="", compare=False)

    def check_steps(self, steps: list[int], where: str = "") -> None:
        """Refuse a time grid [T_0..T_N] this target cannot hold (before any training)."""
        for n, s in enumerate(steps):
            if not 1 <= s <= self.max_steps_per_layer:
                raise TargetError(f"{where}layer {n} window of {s} steps: target {self.name} allows "
                                  f"1..{self.max_steps_per_layer} ({self.path}: time.max_steps_per_layer)")
        total = sum(steps) + self.synaptic_delay * len(steps)
        if total > self.max_total_steps:
            raise TargetError(f"{where}total latency {total} steps exceeds target {self.name}'s "
                              f"{self.max_total_steps} ({self.path}: time.max_total_steps)")

    def check_bits(self, bits: int, where: str = "") -> None:
        if not 2 <= bits <= self.weights.bits:
            raise TargetError(f"{where}{bits}-bit weights: target {self.name} holds 2..{self.weights.bits} "
                              f"bits ({self.path}: weights.bits)")

    def weight_format(self, bits: int | None = None) -> WeightFormat:
        """The target's weight format, narrowed to ``bits`` mantissa bits when given."""
        if bits is None:
            return self.weights
        self.check_bits(bits)
        return WeightFormat(bits=bits, narrow=self.weights.narrow, scale=self.weights.scale,
                            exp_range=self.weights.exp_range, bias_bits=self.weights.bias_bits)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def parse_target(data: object, path: str) -> TargetSpec:
    """Validate a target mapping against the schema; errors name ``path`` and the key."""
    if not isinstance(data, dict):
        raise TargetError(f"{path}: a target file must be a mapping, got {type(data).__name__}")
    flat = _flatten(data)
    for key in flat:
        if key not in _SCHEMA:
            raise TargetError(f"{path}: unknown key {key!r}; known keys: {', '.join(sorted(_SCHEMA))}")
    for key, (typ, check, allowed) in _SCHEMA.items():
        if key not in flat:
            if key in _OPTIONAL:
                continue
            raise TargetError(f"{path}: missing key {key!r} ({allowed})")
        value = flat[key]
        if type(value) is not typ or not check(value):  # bool is not accepted where int is wanted
            raise TargetError(f"{path}: key {key!r} = {value!r} is invalid: must be {allowed}")
    w = WeightFormat(bits=flat["weights.bits"], narrow=flat["weights.narrow"], scale=flat["weights.scale"],
                     exp_range=tuple(flat["weights.exp_range"]), bias_bits=flat["weights.bias_bits"])
    if flat["backend"] == "loihi" and w.bits > 8:
        raise TargetError(f"{path}: key 'weights.bits' = {w.bits}: Lava's Dense holds at most 8 bits")
    return TargetSpec(
        name=flat["name"], backend=flat["backend"], weights=w,
        input_steps=flat["time.input_steps"], steps_per_layer=flat["time.steps_per_layer"],
        max_steps_per_layer=flat["time.max_steps_per_layer"], max_total_steps=flat["time.max_total_steps"],
        membrane_bits=flat["state.membrane_bits"], overflow=flat["state.overflow"],
        synaptic_delay=flat["synaptic_delay"], max_fan_in=flat["limits.max_fan_in"],
        max_neurons_per_layer=flat["limits.max_neurons_per_layer"], readout=flat["readout"],
        summary=flat.get("summary", ""), aliases=tuple(flat.get("aliases", ())), path=path)


def load_target(name_or_path: str) -> TargetSpec:
    """A target by name or alias (``targets/NAME.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        matches = [t for t in list_targets() if name_or_path in (t.name, *t.aliases)]
        if not matches:
            known = ", ".join(t.name for t in list_targets())
            raise TargetError(f"unknown target {name_or_path!r}; known: {known} (or give a path to a YAML file)")
        return matches[0]
    return parse_target(read_yaml(path, TargetError, "target"), str(path))


def list_targets() -> list[TargetSpec]:
    """Every target shipped in ``targets/``, sorted by name."""
    return sorted((load_target(str(p)) for p in TARGETS_DIR.glob("*.yaml")), key=lambda t: t.name)

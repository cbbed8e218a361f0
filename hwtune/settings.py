"""Settings as self-validating dataclasses: one definition drives the CLI, recipes, sweeps and targets.

A setting is a dataclass field made by :func:`setting`: its default, kind, help text, unit and
allowed values (a :class:`Rule`). A :class:`Settings` dataclass checks every field when it is
built (type, finite number, range, choices), so an instance is always valid; it is built from a
mapping (recipes, sweeps, target files) with errors that name the file and key, and it adds its
fields to an ``argparse`` parser with the help text, unit and true default (the CLI).

Kinds: ``int``, ``float``, ``bool``, ``str``, ``steps`` (an int or a list of ints, one per hidden
layer), ``bits`` (an int, or ``"float"``/None for float weights), ``range`` (two ints [lo, hi],
lo <= hi), ``names`` (a list of strings) and ``section`` (a nested Settings dataclass, given as a
mapping: target files and recipes are trees of sections). NaN and infinities are never
valid; integers given as integral floats (``4.0``) are accepted as ints, anything else is refused.
This module imports no torch: ``hwtune --help`` uses it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from hwtune.errors import ConfigError, UsageError, short

KINDS = ("int", "float", "bool", "str", "steps", "bits", "range", "names", "section")


@dataclass(frozen=True)
class Rule:
    """What a setting may hold. ``lo``/``hi``: inclusive bounds; ``gt``: exclusive lower bound;
    ``optional``: None (null in YAML) is allowed; ``flag``: the CLI flag ("" = not on the CLI);
    ``default_text``: the default in words, where the value alone would not say it."""

    kind: str
    help: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    gt: float | None = None
    choices: tuple | None = None
    optional: bool = False
    flag: str | None = None
    default_text: str | None = None
    section: type | None = None

    def describe(self) -> str:
        """The allowed values in words, e.g. 'an integer in [2, 16]'."""
        if self.choices:
            what = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                    "steps": "an integer (or a list of integers)", "bits": "an integer",
                    "range": "two integers [lo, hi], lo <= hi, each", "names": "a list of strings",
                    "section": "a mapping"}[self.kind]
            if self.lo is not None and self.hi is not None:
                what += f" in [{_num(self.lo)}, {_num(self.hi)}]"
            elif self.gt is not None and self.hi is not None:
                what += f" in ({self.gt:g}, {self.hi:g}]"
            elif self.lo is not None:
                what += f" >= {self.lo:g}"
            elif self.gt is not None:
                what += f" > {self.gt:g}"
            elif self.hi is not None:
                what += f" <= {self.hi:g}"
            if self.kind == "bits" and self.optional:
                what += " or 'float'"
        return what + (" or null" if self.optional and self.kind != "bits" else "")


def _num(x) -> str:
    """A bound in words: integers in full (2**63 - 1 is not 9.22337e+18), other numbers short."""
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1e6 else f"{x:g}"


def setting(default: Any, kind: str, help: str, unit: str = "", **rule) -> Any:
    """A dataclass field carrying its :class:`Rule` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    if isinstance(default, list):
        factory = {"default_factory": lambda: list(default)}
    elif isinstance(default, type):          # a section class: each instance gets its own default section
        factory = {"default_factory": default}
    else:
        factory = {"default": default}
    return field(metadata={"rule": Rule(kind, help, unit, **rule)}, **factory)


def like(cls, name: str, default=None, **changes) -> Any:
    """A field with the rule of ``cls``'s setting ``name`` (changed by ``changes``): one definition,
    reused where another dataclass takes the same setting (e.g. a pass config and a target section)."""
    return field(default=default, metadata={"rule": dataclasses.replace(rule_of(cls, name), **changes)})


def rule_of(cls_or_obj, name: str) -> Rule:
    """The :class:`Rule` of field ``name`` of a Settings class."""
    for f in _setting_fields(cls_or_obj):
        if f.name == name:
            return f.metadata["rule"]
    raise KeyError(name)


def _integer(value, name: str, rule: Rule) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
    return int(value)


def _in_range(value, name: str, rule: Rule, given=None):
    """``value`` if it satisfies the bounds; the error shows the value as ``given``."""
    if ((rule.lo is not None and value < rule.lo) or (rule.hi is not None and value > rule.hi)
            or (rule.gt is not None and value <= rule.gt)):
        raise ConfigError(f"{name} = {short(value if given is None else given)} must be {rule.describe()}")
    return value


def check_value(rule: Rule, name: str, value):
    """``value`` converted to the rule's kind, or ConfigError naming ``name`` and what is allowed."""
    if value is None:
        if rule.optional:
            return None
        raise ConfigError(f"{name} is required: {rule.describe()}")
    kind = rule.kind
    if kind == "bits" and value == "float":
        if not rule.optional:
            raise ConfigError(f"{name} = 'float' is not allowed here: {rule.describe()}")
        return None
    if kind in ("int", "bits"):
        value = _in_range(_integer(value, name, rule), name, rule, value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} = {short(value)} must be {rule.describe()} (finite)")
        value = _in_range(float(value), name, rule, value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {short(value)} must be true or false")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
    elif kind == "steps":
        if isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"{name} = [] must list at least one window")
            value = [_in_range(_integer(v, name, rule), name, rule) for v in value]
        else:
            value = _in_range(_integer(value, name, rule), name, rule)
    elif kind == "names":
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
        value = list(value)
    elif kind == "section":
        if isinstance(value, dict):
            value = rule.section.from_mapping(value, name)
        elif not isinstance(value, rule.section):
            raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
    elif kind == "range":
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
        value = [_in_range(_integer(v, name, rule), name, rule) for v in value]
        if value[0] > value[1]:
            raise ConfigError(f"{name} = {value} must be {rule.describe()}")
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(f"{name} = {short(value)} must be {rule.describe()}")
    return value


class Settings:
    """Mixin for frozen dataclasses whose fields are made by :func:`setting`.

    ``__post_init__`` checks (and normalises) every field, then calls :meth:`check` for rules
    that involve several fields.
    """

    def __post_init__(self):
        for f in _setting_fields(self):
            object.__setattr__(self, f.name, check_value(f.metadata["rule"], f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Cross-field rules (override); raise ConfigError."""

    def to_dict(self) -> dict:
        """Plain data (nested sections as mappings), e.g. for JSON; from_mapping reads it back."""
        return {f.name: _plain(getattr(self, f.name)) for f in _setting_fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in _setting_fields(cls)]

    @classmethod
    def from_mapping(cls, data, where: str = ""):
        """Build from a mapping (recipe section, YAML); unknown keys and bad values raise ConfigError
        prefixed with ``where`` (the file and key path)."""
        prefix = f"{where}: " if where else ""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{prefix}expected a mapping of {', '.join(cls.field_names())}, "
                              f"got {type(data).__name__}")
        names = cls.field_names()
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ConfigError(f"{prefix}unknown setting(s) {', '.join(map(str, unknown))}; known: {', '.join(names)}")
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None

    # ---- command line ------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, exclude: tuple[str, ...] = (),
                      defaults: dict | None = None) -> None:
        """One ``--flag`` per field (dest = field name, default None = 'not given'); help states
        the unit and the true default (``defaults`` overrides a field's default for this verb)."""
        defaults = defaults or {}
        for f in _setting_fields(cls):
            rule: Rule = f.metadata["rule"]
            if f.name in exclude or rule.flag == "" or rule.kind == "section":
                continue
            default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
            flag = rule.flag or "--" + f.name.replace("_", "-")
            shown = rule.default_text if rule.default_text and f.name not in defaults else _show(default, rule)
            text = rule.help + (f" [{rule.unit}]" if rule.unit else "") + f" (default: {shown})"
            if rule.kind == "bool":
                parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                    help=text)
                continue
            parser.add_argument(flag, dest=f.name, default=None, type=_cli_type(rule, flag), help=text,
                                metavar=_metavar(rule), **({"choices": rule.choices} if rule.choices else {}))

    @classmethod
    def from_args(cls, args: argparse.Namespace, defaults: dict | None = None, **fixed):
        """Build from parsed CLI arguments: flags given, else ``defaults``, else the field default.
        Flags that contradict each other (a cross-field :meth:`check`) raise UsageError (exit 2)."""
        values = dict(defaults or {})
        for name in cls.field_names():
            given = getattr(args, name, None)
            if given is not None:
                values[name] = given
        values.update(fixed)
        try:
            return cls(**values)
        except ConfigError as e:       # each flag was checked by argparse: what is left is a conflict
            raise UsageError(str(e)) from None


def _setting_fields(cls_or_obj) -> list:
    """The dataclass fields made by :func:`setting` (others, e.g. a file path, are bookkeeping)."""
    return [f for f in fields(cls_or_obj) if "rule" in f.metadata]


def _plain(value):
    return value.to_dict() if isinstance(value, Settings) else (list(value) if isinstance(value, tuple) else value)


def _show(default, rule: Rule) -> str:
    if default is None:
        return "float" if rule.kind == "bits" else "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _metavar(rule: Rule) -> str | None:
    if rule.choices:
        return None
    return {"int": "N", "float": "X", "str": "TEXT", "steps": "N[,N...]", "bits": "N|float"}.get(rule.kind)


def _cli_type(rule: Rule, flag: str):
    """argparse ``type=``: parse the text, then check it with the rule (argparse reports a usage error)."""
    def parse(text: str):
        try:
            if rule.kind == "steps":
                parts = [p.strip() for p in text.split(",")]
                value = [_parse_number(p, int) for p in parts]
                value = value[0] if len(value) == 1 else value
            elif rule.kind == "bits" and text == "float":
                check_value(rule, flag, "float")
                return "float"          # kept as text so that from_args sees it was given
            elif rule.kind == "bits":
                value = _parse_number(text, int)
            elif rule.kind in ("int", "float"):
                value = _parse_number(text, int if rule.kind == "int" else float)
            else:
                value = text
            return check_value(rule, flag, value)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"{flag} = ", "")) from None
    parse.__name__ = rule.kind
    return parse


def _parse_number(text: str, typ):
    try:
        value = float(text) if typ is float else int(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not {'a number' if typ is float else 'an integer'}") from None
    return value

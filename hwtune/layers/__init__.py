"""Layer kinds: one class per kind, each in its own module of this package (hwtune.layers.base
describes the contract), and their registry.

Every module that needs to know what a kind does asks its class here: architectures (shapes,
checks), the torch TTFS net and its ReLU twin, conversion, quantization, export, the emulator
(integer ``apply``), connectivity (``matrix``), the mapper and the artifact JSON. The registry is
built from the package's modules: adding a kind is adding a module (and its tests), nothing else.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from hwtune.layers.base import ArchError, LayerKind, OpError, ShapeOp, Synapse, exact_dtype
from hwtune.layers.conv2d import IM2COL_BYTES, Conv2d
from hwtune.layers.dense import Dense
from hwtune.layers.flatten import Flatten
from hwtune.layers.pool import MaxPool, SumPool
from hwtune.layers.stage import Stage


def _discover() -> dict[str, type[LayerKind]]:
    """Every concrete LayerKind with a ``kind`` name defined in a module of this package, by name."""
    kinds = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, LayerKind) and cls.kind and cls.__module__ == module.__name__:
                if cls.kind in kinds and kinds[cls.kind] is not cls:
                    raise ImportError(f"layer kind {cls.kind!r} is defined twice: {kinds[cls.kind]} and {cls}")
                kinds[cls.kind] = cls
    return kinds


#: Every kind by its name.
KINDS: dict[str, type[LayerKind]] = _discover()
#: Older names (model files of format 1-2) -> the kind's name.
ALIASES = {alias: cls.kind for cls in KINDS.values() for alias in cls.aliases}
#: Names of the weighted kinds (synapse nodes of an architecture).
WEIGHTED = tuple(name for name, cls in KINDS.items() if cls.weighted)

__all__ = ["ArchError", "Conv2d", "Dense", "Flatten", "IM2COL_BYTES", "KINDS", "LayerKind", "MaxPool", "OpError",
           "ShapeOp", "Stage", "SumPool", "Synapse", "WEIGHTED", "exact_dtype", "kind_of", "is_weighted", "canonical",
           "op_from_json", "synapse_from_json"]


def kind_of(layer: dict | str) -> type[LayerKind]:
    """The class of a layer dict's (or a name's) kind, older names included (KeyError when unknown)."""
    name = layer["kind"] if isinstance(layer, dict) else layer
    return KINDS[ALIASES.get(name, name)]


def is_weighted(layer: dict) -> bool:
    """Whether an architecture layer dict is a synapse node (dense, conv2d)."""
    return kind_of(layer).weighted


def canonical(layer: dict) -> dict:
    """A copy of an architecture layer dict under its kind's name (older names renamed)."""
    return {**layer, "kind": kind_of(layer).kind}


def _kind_in(d, accept) -> type[LayerKind] | None:
    cls = KINDS.get(d.get("kind")) if isinstance(d, dict) and isinstance(d.get("kind"), str) else None
    return cls if cls is not None and accept(cls) else None


def op_from_json(d: dict) -> ShapeOp:
    """A shape op of an artifact stage from its JSON description (OpError on anything else)."""
    def accept(c):
        return issubclass(c, ShapeOp) and not c.not_in_artifact
    cls = _kind_in(d, accept)
    if cls is None:
        raise OpError(f"an op is {{kind: {' | '.join(n for n, c in KINDS.items() if accept(c))}, ...}}, got {str(d)[:80]}")
    return cls.from_json(d)


def synapse_from_json(d: dict, take) -> Synapse:
    """A synapse from its JSON description, ``take()`` giving its weight arrays in leaf order."""
    def accept(c):
        return issubclass(c, Synapse)
    cls = _kind_in(d, accept)
    if cls is None:
        raise OpError(f"a synapse is {{kind: {' | '.join(n for n, c in KINDS.items() if accept(c))}, ...}}, "
                      f"got {str(d)[:80]}")
    return cls.from_json(d, take)

"""Layer kinds: one class per kind (hwtune.layers.base describes the contract), and their registry.

Every module that needs to know what a kind does asks its class here: architectures (shapes,
checks), the torch TTFS net and its ReLU twin, conversion, quantization, export, the emulator
(integer ``apply``), connectivity (``matrix``), the mapper and the artifact JSON. Adding a kind:
one module with its class, one line in :data:`KINDS`.
"""
from __future__ import annotations

from hwtune.layers.base import ArchError, LayerKind, OpError, ShapeOp, Synapse, exact_dtype
from hwtune.layers.conv2d import IM2COL_BYTES, Conv2d
from hwtune.layers.dense import Dense
from hwtune.layers.flatten import Flatten
from hwtune.layers.pool import MaxPool, SumPool

#: Every kind by its name.
KINDS: dict[str, type[LayerKind]] = {cls.kind: cls for cls in (Dense, Conv2d, SumPool, MaxPool, Flatten)}
#: Older names (model files of format 1-2) -> the kind's name.
ALIASES = {alias: cls.kind for cls in KINDS.values() for alias in cls.aliases}
#: Names of the weighted kinds (synapses).
WEIGHTED = tuple(name for name, cls in KINDS.items() if cls.weighted)

__all__ = ["ArchError", "Conv2d", "Dense", "Flatten", "IM2COL_BYTES", "KINDS", "LayerKind", "MaxPool", "OpError",
           "ShapeOp", "SumPool", "Synapse", "WEIGHTED", "exact_dtype", "kind_of", "is_weighted", "canonical",
           "op_from_json", "synapse_from_json"]


def kind_of(layer: dict | str) -> type[LayerKind]:
    """The class of a layer dict's (or a name's) kind, older names included (KeyError when unknown)."""
    name = layer["kind"] if isinstance(layer, dict) else layer
    return KINDS[ALIASES.get(name, name)]


def is_weighted(layer: dict) -> bool:
    """Whether an architecture layer dict is a synapse (dense, conv2d)."""
    return kind_of(layer).weighted


def canonical(layer: dict) -> dict:
    """A copy of an architecture layer dict under its kind's name (older names renamed)."""
    return {**layer, "kind": kind_of(layer).kind}


def op_from_json(d: dict) -> ShapeOp:
    """A shape op of an artifact layer from its JSON description (OpError on anything else)."""
    cls = KINDS.get(d.get("kind")) if isinstance(d, dict) and isinstance(d.get("kind"), str) else None
    if cls is None or cls.weighted or cls.not_in_artifact:
        names = " | ".join(n for n, c in KINDS.items() if not c.weighted and not c.not_in_artifact)
        raise OpError(f"an op is {{kind: {names}, ...}}, got {str(d)[:80]}")
    return cls.from_json(d)


def synapse_from_json(d: dict, weight) -> Synapse:
    """A synapse from its JSON description and weight array, checked against each other."""
    cls = KINDS.get(d.get("kind")) if isinstance(d, dict) and isinstance(d.get("kind"), str) else None
    if cls is None or not cls.weighted:
        raise OpError(f"a synapse is {{kind: {' | '.join(WEIGHTED)}, ...}}, got {str(d)[:80]}")
    return cls.from_json(d, weight)

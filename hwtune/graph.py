"""An architecture as a graph, and the spiking layers it makes (no torch).

An architecture is a list of node dicts ``{"kind": NAME, ..., "name": N, "inputs": [names]}`` in
topological order: ``inputs`` name earlier nodes or ``"input"`` (the sample), by default the node
listed before (the sample for the first); ``name`` defaults to the kind and the node's index
(``conv2d3``). Each node's kind (hwtune.layers) says what flows out of it:

- a synapse (dense, conv2d) or a join of potentials (add) gives a **potential**: the ReLU net's
  pre-activation. A potential that feeds anything but joins spikes: it is a **layer** (a ReLU in
  the twin, TTFS neurons in the spiking net), and every node it feeds, a join too, reads its
  activation; one that feeds joins only is summed into them before any ReLU; the read-out is the
  last potential, which may only be followed by reshapes (flatten);
- a shape op (flatten, pooling, concat) gives **activations**: of the sample, of layers, or of
  shape ops on them.

:func:`layers_of` turns the graph into the list every user walks (the torch TTFS net, its ReLU
twin, quantization, export; the artifact holds the same list): one :class:`Layer` per potential that
spikes, plus the read-out, in node order, each a sum of :class:`Branch` es: the activations of its
sources through shape ops into one synapse node, or, for an activation that enters a join, into an
identity synapse (weight 1). A concat joins layers' (or the sample's) activations directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwtune.layers import KINDS, ArchError, ShapeOp, canonical, kind_of

#: The name by which ``inputs`` refer to the sample (no node may bear it).
INPUT = "input"


@dataclass(frozen=True)
class Node:
    """One node of an architecture: its index in the list, name, kind class, canonical dict, input
    names and output shape (None when the graph was read without an input shape)."""

    index: int
    name: str
    cls: type
    spec: dict
    inputs: tuple
    shape: tuple | None


@dataclass(frozen=True)
class Branch:
    """Activations of ``sources`` (0: the sample, m: layer m, 1-based) through shape ``ops`` (instances,
    the first may join several sources) into synapse node ``synapse`` (its index among the synapse
    nodes, i.e. in a TTFS net's ``synapses``), or into an identity synapse when None.
    in_shapes: the sources' shapes; shape: what the synapse reads; gain: the ops' averaging divisor
    (the area they sum: a float average is the integer sum over it; None without shapes)."""

    sources: tuple
    ops: tuple
    synapse: int | None
    in_shapes: tuple
    shape: tuple | None
    gain: int | None


@dataclass(frozen=True)
class Layer:
    """A spiking layer (or the read-out): the potential of node ``node`` (its name: ``name``), the sum
    of its ``branches``; ``shape`` the shape of its neurons; ``prefix`` how artifact layers of its kind
    are named; ``named``: whether the architecture named the node itself."""

    name: str
    node: int
    branches: tuple
    shape: tuple | None
    prefix: str
    named: bool

    @property
    def sources(self) -> tuple:
        """Every source of every branch, in branch order (one per input of the artifact layer)."""
        return tuple(p for b in self.branches for p in b.sources)


def layer_names(layers) -> list[str]:
    """What each layer is called wherever it is shown (artifact, resource map, pass reports): its
    node's name where the architecture named it, else its kind's prefix and its index among the
    layers (dense0, conv2d1, ...)."""
    return [layer.name if layer.named else f"{layer.prefix}{n}" for n, layer in enumerate(layers)]


@dataclass(frozen=True)
class Graph:
    """An architecture resolved: its nodes, the synapse nodes (indices in node order) and the layers."""

    nodes: tuple
    synapses: tuple
    layers: tuple

    @property
    def n_hidden(self) -> int:
        return len(self.layers) - 1

    def sources(self) -> list[tuple]:
        """Per layer, the nodes it reads (0: the sample, m: layer m): numerics.Timing's sources."""
        return [layer.sources for layer in self.layers]

    def shapes(self) -> list[tuple]:
        """The shape of one sample after every node, in node order."""
        return [node.shape for node in self.nodes]


def _node(i: int, layer, previous: str, names: set) -> Node:
    if not isinstance(layer, dict):
        raise ArchError(f"layer {i}: expected a mapping with a 'kind', got {layer!r}")
    try:
        cls = kind_of(layer)
    except (KeyError, TypeError):
        raise ArchError(f"layer {i}: unknown kind {layer.get('kind')!r}; known: {', '.join(KINDS)}") from None
    if not cls.in_architecture:
        raise ArchError(f"layer {i}: a {cls.kind} is not an architecture node: {cls.__doc__.split(':')[0]}")
    cls.check_spec(i, layer)
    name = layer.get("name", f"{cls.kind}{i}")
    if not isinstance(name, str) or not name or name == INPUT or name in names:
        raise ArchError(f"layer {i} ({cls.kind}): name {name!r} must be a new non-empty string other than {INPUT!r}")
    inputs = layer.get("inputs", [previous])
    if not isinstance(inputs, list) or not inputs or not all(isinstance(n, str) for n in inputs):
        raise ArchError(f"layer {i} ({name}): inputs must be a non-empty list of node names, got {inputs!r}")
    unknown = [n for n in inputs if n != INPUT and n not in names]
    if unknown:
        raise ArchError(f"layer {i} ({name}): input {unknown[0]!r} is not {INPUT!r} or a node listed before it")
    if cls.arity is None and len(inputs) < 2 or cls.arity is not None and len(inputs) != cls.arity:
        raise ArchError(f"layer {i} ({name}): a {cls.kind} takes {cls.arity or 'two or more'} input(s), got "
                        f"{len(inputs)}: {inputs}")
    return Node(i, name, cls, canonical(layer), tuple(inputs), None)


def _potential(node: Node) -> bool:
    return node.cls.weighted or node.cls.sums_potentials


def read(arch, input_shape: tuple | None = None) -> Graph:
    """The graph of ``arch`` (checked: kinds, keys, names, inputs, arity, shapes when ``input_shape`` is
    given, and the rules of the module docstring), with its layers. ArchError names the node at fault."""
    if not isinstance(arch, list) or not arch:
        raise ArchError(f"an architecture is a list of layers (at least one), got {type(arch).__name__}")
    nodes, names = [], set()
    for i, layer in enumerate(arch):
        node = _node(i, layer, nodes[-1].name if nodes else INPUT, names)
        names.add(node.name)
        nodes.append(node)
    if input_shape is not None:
        shapes = {INPUT: tuple(input_shape)}
        for node in nodes:
            shape = node.cls.spec_output_shape(node.index, node.spec, *(shapes[n] for n in node.inputs))
            shapes[node.name] = shape
        nodes = [Node(n.index, n.name, n.cls, n.spec, n.inputs, shapes[n.name]) for n in nodes]
    return Graph(tuple(nodes), tuple(n.index for n in nodes if n.cls.weighted), _layers(nodes, input_shape))


def _layers(nodes: list[Node], input_shape) -> tuple:
    by_name = {n.name: n for n in nodes}
    consumers = {n.name: [by_name[c.name] for c in nodes if n.name in c.inputs] for n in nodes}
    potentials = [n for n in nodes if _potential(n)]
    if not any(n.cls.weighted for n in nodes):
        raise ArchError("architecture has no dense or conv layer")
    readout = potentials[-1]
    if any(not n.cls.reshapes_only for n in nodes[readout.index + 1:]):
        raise ArchError("the last weighted layer (read-out) must come after every pooling layer")
    synapse_index = {n.index: i for i, n in enumerate(n for n in nodes if n.cls.weighted)}
    shape_of = {INPUT: None if input_shape is None else tuple(input_shape), **{n.name: n.shape for n in nodes}}
    activations = {INPUT: ((0,), ())}          # name -> (sources, ops) of an activation-valued node
    sums: dict = {}                            # name -> branches of a potential that feeds joins only
    layers = []

    def expression(node: Node, name: str):
        if name not in activations:
            raise ArchError(f"layer {node.index} ({node.name}): a {node.cls.kind} takes activations; {name!r} "
                            "gives a potential that only feeds joins")
        return activations[name]

    def branch(name: str, sources, ops, synapse) -> Branch:
        """The activations of node ``name`` (``sources`` through ``ops``) into ``synapse``."""
        shapes = tuple(shape_of[INPUT] if p == 0 else layers[p - 1].shape for p in sources)
        gain, op_in = None, list(shapes)
        if input_shape is not None:
            gain = 1
            for op in ops:
                gain *= op.gain_on(*op_in)
                op_in = [op.output_shape(*op_in)]
        return Branch(tuple(sources), tuple(ops), synapse, shapes, shape_of[name], gain)

    for node in nodes:
        if isinstance(node.cls, type) and issubclass(node.cls, ShapeOp):
            op = node.cls.from_spec(node.spec)
            if node.cls.arity == 1:
                sources, ops = expression(node, node.inputs[0])
                activations[node.name] = (sources, ops + (op,))
            else:
                parts = [expression(node, n) for n in node.inputs]
                if any(ops for _, ops in parts):
                    raise ArchError(f"layer {node.index} ({node.name}): a {node.cls.kind} joins layers (or the sample) "
                                    "directly: put shape ops after it, not between a layer and it")
                activations[node.name] = (tuple(p for sources, _ in parts for p in sources), (op,))
            continue
        if node.cls.weighted:
            branches = (branch(node.inputs[0], *expression(node, node.inputs[0]), synapse_index[node.index]),)
        else:                                    # a join of potentials: branches of its inputs, identities
            branches = sum((sums[name] if name in sums else (branch(name, *expression(node, name), None),)
                            for name in node.inputs), ())
        joins = [c for c in consumers[node.name] if c.cls.sums_potentials]
        others = [c for c in consumers[node.name] if not c.cls.sums_potentials]
        if joins and not others and node is not readout:
            sums[node.name] = branches
            continue
        if not joins and not others and node is not readout:
            raise ArchError(f"layer {node.index} ({node.name}) feeds no layer: every layer but the read-out must")
        layers.append(Layer(node.name, node.index, branches, node.shape, node.cls.name_prefix, "name" in node.spec))
        activations[node.name] = ((len(layers),), ())
    return tuple(layers)


def n_hidden(arch) -> int:
    """Spiking (hidden) layers of a valid architecture: its layers but the read-out."""
    return read(arch).n_hidden


def weights_of(arch, input_shape: tuple) -> list[int]:
    """How many weights each synapse node holds (size checks before anything is allocated)."""
    graph = read(arch, input_shape)
    return [graph.nodes[i].cls.spec_weights(graph.nodes[i].spec) for i in graph.synapses]


def largest_layer(arch, input_shape: tuple) -> int:
    """The most values one node's output holds (size checks before anything is allocated)."""
    return max(math.prod(shape) for shape in [tuple(input_shape), *read(arch, input_shape).shapes()])

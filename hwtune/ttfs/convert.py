"""Exact ReLU -> TTFS conversion (B1: SNN weights = ReLU weights) of any torch module that traces.

The module is traced with torch.fx (``torch.fx.symbolic_trace``), so residual and branching nets
convert as well as ``nn.Sequential`` ones. Each traced op becomes a node of an hwtune architecture
(hwtune.graph), found by the kinds' ``torch_types`` (modules) and ``torch_functions`` (functions and
tensor methods): Linear / Conv2d (synapses), add (a join), concat, pooling, global average pooling,
flatten. Batch norm directly after a synapse is folded into it (W' = kappa W,
b' = kappa (b - mu) + beta, kappa = gamma / sqrt(var + eps)); ReLU marks a synapse's or a join's output
as spiking; Dropout and Identity pass their input on (the net is converted in eval mode). Anything
else is refused, naming the op, its place in the graph (the traced node and its module path) and
what is accepted (:data:`ACCEPTED`). MaxPool2d is refused: no target's integer artifact has max
pooling. The ReLU net must take pixel intensities u in [0, 1] (hwtune.data). Windows:
L_n = margin x X_n, X_n = largest activation of layer n on the calibration data.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from hwtune import graph
from hwtune.layers import KINDS, ArchError
from hwtune.ttfs.arch import ReLUNet
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.windows import layer_maxima, set_windows

ACCEPTED = ("a torch module that torch.fx traces, built of Linear, Conv2d (integer padding), BatchNorm1d/2d directly "
            "after a Linear or Conv2d, ReLU after a synapse or an add, " +
            ", ".join(sorted({f"{cls.kind} ({', '.join(cls.torch_types + cls.torch_functions)})"
                              for cls in KINDS.values() if cls.in_architecture and not cls.weighted
                              and not cls.not_in_artifact and (cls.torch_types or cls.torch_functions)})) +
            ", Dropout and Identity")
_PASS = (nn.Dropout, nn.Identity)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_RELU = ("relu", "relu_")


def _kind_of_module(m: nn.Module):
    """The layer kind (hwtune.layers) that reads torch module ``m`` (its ``torch_types``), or None."""
    for cls in KINDS.values():
        if any(isinstance(m, getattr(nn, name)) for name in cls.torch_types):
            return cls
    return None


def _kind_of_function(name: str):
    for cls in KINDS.values():
        if name in cls.torch_functions:
            return cls
    return None


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    kappa = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * kappa.reshape(shape), kappa * (bias - bn.running_mean) + bn.bias


class _Reader:
    """Turns a traced graph into an architecture (node dicts) and the synapses' (W, b)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.arch: list[dict] = []
        self.params: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.values: dict = {}            # fx node -> (arch node name, "potential" | "activation")
        self.synapse_of: dict = {}        # arch name of a synapse node -> its index in params
        self.summed: set = set()          # potentials an add sums before their ReLU
        self.spiking: set = set()         # potentials a ReLU makes spike

    def where(self, node) -> str:
        module = f", module {node.target!r}" if node.op == "call_module" else ""
        return f"traced op {node.name!r} ({self.describe(node)}{module})"

    def describe(self, node) -> str:
        if node.op == "call_module":
            return type(self.model.get_submodule(node.target)).__name__
        return getattr(node.target, "__name__", str(node.target))

    def refuse(self, node, why: str):
        raise ArchError(f"{self.where(node)}: {why}. Accepted: {ACCEPTED}")

    def value(self, node, arg):
        if not hasattr(arg, "op") or arg not in self.values:
            self.refuse(node, f"takes {arg!r}, which is not the output of a traced op")
        return self.values[arg]

    def add(self, node, spec: dict, inputs: list[str]) -> str:
        name = node.name.lstrip("_")
        name = name if name[:1].isalpha() else f"{spec['kind']}{name}"
        self.arch.append({**spec, "name": name, "inputs": inputs})
        return name

    def architecture(self) -> list[dict]:
        """The nodes read; a chain (every node reads the one before it) without names or inputs, as the
        presets are written, so its layers are named by kind and index."""
        previous = [graph.INPUT] + [d["name"] for d in self.arch[:-1]]
        if all(d["inputs"] == [p] for d, p in zip(self.arch, previous)):
            return [{k: v for k, v in d.items() if k not in ("name", "inputs")} for d in self.arch]
        return self.arch

    def activations(self, node, args) -> list[str]:
        names = []
        for arg in args:
            name, state = self.value(node, arg)
            if state != "activation":
                self.refuse(node, f"takes the output of {name!r} before its ReLU: a TTFS layer spikes only through one")
            names.append(name)
        return names

    def read(self, traced) -> None:
        for node in traced.graph.nodes:
            if node.op == "placeholder":
                if self.values:
                    self.refuse(node, "a second input: the net must take one tensor of pixels")
                self.values[node] = (graph.INPUT, "activation")
            elif node.op == "output":
                name, state = self.value(node, node.args[0])
                if state != "potential":
                    self.refuse(node, f"the net returns {name!r} after a ReLU: the read-out is a synapse without one")
            elif node.op == "get_attr":
                self.refuse(node, "reads a parameter or buffer directly: use modules (Linear, Conv2d, ...)")
            else:
                self.op(node)

    def op(self, node) -> None:
        from torch.fx.node import map_arg

        tensors: list = []
        map_arg((node.args, node.kwargs), tensors.append)          # every input node, in order, repeats kept
        args = [a for a in tensors if self.values.get(a, ("", ""))[1] != "shape"]
        if node.op == "call_module":
            module = self.model.get_submodule(node.target)
            if isinstance(module, _PASS):
                self.values[node] = self.value(node, node.args[0])
            elif isinstance(module, nn.ReLU):
                self.relu(node)
            elif isinstance(module, _BATCH_NORM):
                self.batch_norm(node, module)
            else:
                cls = _kind_of_module(module)
                if cls is None:
                    self.refuse(node, f"a {type(module).__name__} module cannot be converted to TTFS")
                self.kind(node, cls, cls.spec_from_torch(module, self.where(node)), args, module)
            return
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if name == "size" and node.op == "call_method":      # x.size(0) for x.view(x.size(0), -1)
            self.values[node] = ("", "shape")
        elif name in _RELU:
            self.relu(node)
        elif name in ("dropout", "contiguous") and node.op in ("call_function", "call_method"):
            self.values[node] = self.value(node, node.args[0])
        else:
            cls = _kind_of_function(name)
            if cls is None:
                self.refuse(node, f"{node.op} {name!r} cannot be converted to TTFS")
            self.kind(node, cls, cls.spec_from_function(self.where(node), node.args, node.kwargs), args, None)

    def kind(self, node, cls, spec: dict, args: list, module) -> None:
        if cls.not_in_artifact:
            self.refuse(node, f"{cls.not_in_artifact} (export would refuse it); retrain without it")
        if cls.weighted:
            name = self.add(node, spec, self.activations(node, args))
            bias = module.bias if module.bias is not None else torch.zeros(module.weight.shape[0],
                                                                            dtype=module.weight.dtype)
            self.synapse_of[name] = len(self.params)
            self.params.append((module.weight.detach().clone(), bias.detach().clone()))
            self.values[node] = (name, "potential")
        elif cls.sums_potentials:
            names = [self.value(node, a) for a in args]
            self.summed |= {name for name, state in names if state == "potential"}
            self.values[node] = (self.add(node, spec, [name for name, _ in names]), "potential")
        else:
            states = {self.value(node, a)[1] for a in args}
            if states == {"potential"} and cls.reshapes_only:     # a reshape of the read-out
                self.values[node] = (self.add(node, spec, [self.value(node, a)[0] for a in args]), "potential")
            else:
                self.values[node] = (self.add(node, spec, self.activations(node, args)), "activation")

    def relu(self, node) -> None:
        name, state = self.value(node, node.args[0])
        if state != "potential" or name not in self.synapse_of and not self._is_join(name):
            self.refuse(node, f"a ReLU on {name!r}: it must directly follow a Linear/Conv2d (or its batch norm) or an add")
        self.spiking.add(name)
        self.values[node] = (name, "activation")

    def _is_join(self, name: str) -> bool:
        return any(d["name"] == name and KINDS[d["kind"]].sums_potentials for d in self.arch)

    def batch_norm(self, node, bn) -> None:
        name, state = self.value(node, node.args[0])
        if state != "potential" or name not in self.synapse_of or len(node.args[0].users) != 1:
            self.refuse(node, f"batch norm must directly follow a Linear or Conv2d (before its ReLU) whose output "
                              f"nothing else reads; found it after {name!r}")
        i = self.synapse_of[name]
        self.params[i] = _fold_bn(*self.params[i], bn)
        self.values[node] = (name, "potential")


def parse_module(model: nn.Module) -> tuple[list[dict], list[tuple[torch.Tensor, torch.Tensor]]]:
    """(arch, [(W, b)] per synapse node) of a ReLU module, batch norms folded; ArchError naming the op
    otherwise (hwtune.graph checks the graph's rules)."""
    import torch.fx

    if isinstance(model, ReLUNet):
        return model.arch, [(m.weight.detach().clone(), m.bias.detach().clone()) for m in model.synapses]
    if not isinstance(model, nn.Module):
        raise ArchError(f"a {type(model).__name__} cannot be converted: convert takes {ACCEPTED}")
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as e:          # torch.fx raises many kinds (TraceError, TypeError, NotImplementedError...)
        raise ArchError(f"torch.fx cannot trace the {type(model).__name__} ({type(e).__name__}: {str(e)[:200]}): "
                        f"convert takes {ACCEPTED}") from None
    reader = _Reader(model)
    reader.read(traced)
    both = sorted(reader.summed & reader.spiking)
    if both:
        raise ArchError(f"{both[0]!r}: its output is added before its ReLU and used after it: a TTFS layer's "
                        "pre-activation exists only inside its neurons. Accepted: " + ACCEPTED)
    arch = reader.architecture()
    graph.read(arch)
    return arch, reader.params


def from_relu(model: nn.Module, calibration_data: torch.Tensor, margin: float = 1.5,
              batch_size: int | None = None) -> TTFSNet:
    """Exact TTFS twin of a trained ReLU net; windows L_n = margin x layer maxima on the data."""
    arch, params = parse_module(model.eval())
    if not params:
        raise ArchError(f"the {type(model).__name__} has no Linear or Conv2d layer")
    dtype = params[0][0].dtype
    net = TTFSNet(arch, tuple(calibration_data.shape[1:]), dtype=dtype)
    with torch.no_grad():
        for syn, (w, b) in zip(net.synapses, params):
            syn.weight.copy_(w)
            syn.bias.copy_(b)
    set_windows(net, [margin * x for x in layer_maxima(net, calibration_data, batch_size)])
    return net


def to_relu(net: TTFSNet) -> ReLUNet:
    """The ReLU twin of a float TTFS net, with the same (W, b)."""
    model = ReLUNet(net.arch, net.input_shape).to(net.dtype)
    with torch.no_grad():
        for syn, src in zip(model.synapses, net.synapses):
            syn.weight.copy_(src.weight)
            syn.bias.copy_(src.bias)
    return model

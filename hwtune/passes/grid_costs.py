"""Where quantization loses accuracy: what each layer's time grid and weight grid cost on their own.

A net on its grid is compared with its *float self*: the same windows and saturation, float weights,
no time grid (``set_quant(None)``). Each grid is then put back on its own, everything else float:

- the time grid of node p (the input, or hidden layer n): the quantized forward with float weights
  and FINE_STEPS steps in every window but p's, which keeps its T_p (2^16 steps resolve a window to
  L / 65536: float time, to well below any grid a target runs);
- the weight grid of layer n: the float forward with layer n's weights W_q = s q (brevitas' values of
  the quantized net), its bias as the integer net sees it, b_q = beta T_in unit (per-step mantissa
  times the integration steps, in float units), both times the gain c = Delta_n / (unit sigma) that
  the integer slope sigma = round(Delta_n / unit) gives the layer (ReLU is positively homogeneous, so
  this is exact): bias and slope rounding belong to the weight grid.

Each is scored on ``samples`` random *training* samples (seeded; the test set is not used to
diagnose), as accuracy, its loss in points against the float self, and the relative logit error
||logits - logits_float|| / ||logits_float|| (Frobenius, over the samples). The sum of the single
losses need not equal the whole net's loss (grids interact), but the largest row says which grid
to give more resolution. :func:`advice` turns rows that cost more than WARN_POINTS into warnings
naming the layer and the setting that would help, when the pass ends more than WARN_POINTS below
where it started.
"""
from __future__ import annotations

import copy

import torch

from hwtune.configs import FinetuneOptions
from hwtune.graph import layer_names
from hwtune.numerics import MAX_STEPS
from hwtune.training import logits_of
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.quant import QuantSpec

#: Steps of every window not under study: float time for the report's purpose.
FINE_STEPS = MAX_STEPS
#: Accuracy loss (points) above which a pass warns, and above which a row is named in the warning.
WARN_POINTS = 1.0


def float_self(net: TTFSNet) -> TTFSNet:
    """A copy of ``net`` with float weights and no time grid; windows and saturation kept."""
    ref = copy.deepcopy(net)
    ref.set_quant(None)
    return ref


def time_grid_only(net: TTFSNet, ref: TTFSNet, p: int) -> TTFSNet:
    """``ref`` (net's float self) on a grid of FINE_STEPS everywhere but node p, which keeps net's T_p."""
    steps = [FINE_STEPS] * len(net.quant.steps)
    steps[p] = net.quant.steps[p]
    one = copy.deepcopy(ref)
    one.set_quant(QuantSpec(steps, None, delay=net.quant.delay))
    return one


@torch.no_grad()
def weight_grid_only(net: TTFSNet, ref: TTFSNet, n: int) -> TTFSNet:
    """``ref`` with layer n computing what net's integers make of it at float time: each branch's
    weights W_q = s q, the bias b_q = offset x unit (on the layer's first synapse, 0 on the others),
    both times c = Delta_n / (unit sigma), the gain of the integer slope sigma (1 for the read-out)."""
    one = copy.deepcopy(ref)
    synapses = [b.synapse for b in net.layers[n].branches if b.synapse is not None]
    integers = net.integer_parameters(n)
    gain = torch.ones_like(integers.unit) if integers.sigma is None else \
        float(net.windows[n]) / net.quant.steps[n + 1] / (integers.unit * integers.sigma)
    for i, s in enumerate(synapses):
        syn = one.synapses[s]
        weight = net.synapses[s].quant_weight().value.detach().double()
        syn.weight.copy_(weight * gain.reshape((-1,) + (1,) * (weight.ndim - 1)))
        bias = integers.offset * integers.unit * gain if i == 0 else torch.zeros_like(gain)
        syn.bias.copy_(bias.detach())
    return one


def _score(logits: torch.Tensor, y: torch.Tensor, ref_logits: torch.Tensor, ref_accuracy: float) -> dict:
    accuracy = float((logits.argmax(1) == y).double().mean())
    error = float(torch.linalg.norm(logits - ref_logits) / torch.linalg.norm(ref_logits).clamp_min(1e-300))
    return {"accuracy": accuracy, "loss_points": 100 * (ref_accuracy - accuracy), "logit_error": error}


def grid_costs(net: TTFSNet, x: torch.Tensor, y: torch.Tensor) -> dict:
    """What each grid of ``net`` (on a time grid) costs alone on (x, y) (the passes: random training
    samples, PassContext.search_split): see the module docstring. Rows: {"layer", "grid" ("time"
    or "weights"), "setting", "accuracy", "loss_points", "logit_error"}, the input's time grid first,
    then each layer's time grid (hidden layers) and weight grid (layers with synapses, when the
    weights are quantized)."""
    ref = float_self(net)
    ref_logits = logits_of(ref, x)
    ref_accuracy = float((ref_logits.argmax(1) == y).double().mean())
    spec, names = net.quant, ["input"] + layer_names(net.layers)
    rows = []
    for p in range(len(spec.steps)):
        rows.append({"layer": names[p], "grid": "time", "setting": f"{spec.steps[p]} steps",
                     **_score(logits_of(time_grid_only(net, ref, p), x), y, ref_logits, ref_accuracy)})
    if spec.weights is not None:
        for n, layer in enumerate(net.layers):
            if any(b.synapse is not None for b in layer.branches):
                rows.append({"layer": names[n + 1], "grid": "weights", "setting": f"{spec.weights.bits} bits",
                             **_score(logits_of(weight_grid_only(net, ref, n), x), y, ref_logits, ref_accuracy)})
    whole = _score(logits_of(net, x), y, ref_logits, ref_accuracy)
    return {"data": "training", "samples": len(x), "float_accuracy": ref_accuracy,
            "quantized_accuracy": whole["accuracy"], "quantized_loss_points": whole["loss_points"],
            "quantized_logit_error": whole["logit_error"], "rows": rows}


def measure(net: TTFSNet, ctx, samples: int) -> dict | None:
    """:func:`grid_costs` of a pass's net on ``samples`` of its context's training split (None for 0)."""
    return grid_costs(net, *ctx.search_split(samples)) if samples else None


def _remedy(row: dict, net: TTFSNet) -> str:
    """The setting that gives a costly grid more resolution."""
    if row["grid"] == "weights":
        bits = net.quant.weights.bits
        return f"more weight bits (--bits {min(bits + 2, 16)})"
    steps = net.quant.steps
    if row["layer"] == "input":
        return f"more input steps (--input-steps {2 * steps[0]})"
    n = 1 + layer_names(net.layers).index(row["layer"])
    more = list(steps[1:])
    more[n - 1] *= 2
    return f"more steps in its window (--steps {','.join(map(str, more))}), or --window-search"


def _finetune_remedy(options: FinetuneOptions) -> str:
    """What more fine-tuning to try after ``options``: any, if the pass had none; else more
    epochs, and a rate annealed to 0 where it decayed in steps (docs/design.md, "Quantization: less
    loss": worth about a point on the FC2's 5,625 steps)."""
    if options.epochs <= 0:
        return "fine-tuning (--epochs)"
    if options.schedule == "decay":
        return "more fine-tuning (--epochs) with the rate annealed to 0 (--schedule cosine)"
    return "more fine-tuning (--epochs)"


def advice(costs: dict | None, net: TTFSNet, loss_points: float, pass_name: str,
           options: FinetuneOptions) -> list[str]:
    """Warnings when the pass lost more than WARN_POINTS: each grid that costs more than WARN_POINTS
    alone (else the costliest), with the setting that would help, and the fine-tuning to try after
    the pass's fine-tuning ``options``."""
    if costs is None or loss_points <= WARN_POINTS or not costs["rows"]:
        return []
    costly = sorted((r for r in costs["rows"] if r["loss_points"] > WARN_POINTS), key=lambda r: -r["loss_points"])
    costly = costly or [max(costs["rows"], key=lambda r: r["loss_points"])]
    head = (f"{pass_name}: accuracy fell {loss_points:.2f} points; {_finetune_remedy(options)} may recover it, "
            f"and the grids that cost most alone (on {costs['samples']} training samples, before fine-tuning) are:")
    return [head] + [f"  layer {r['layer']!r}: its {'weight' if r['grid'] == 'weights' else 'time'} grid "
                     f"({r['setting']}) costs {r['loss_points']:.2f} points: {_remedy(r, net)}" for r in costly]


def _well_formed(costs) -> bool:
    """Whether ``costs`` has the shape grid_costs returns (a record read from a model file may not)."""
    number = (int, float)
    rows = costs.get("rows") if isinstance(costs, dict) else None
    return (isinstance(rows, list) and isinstance(costs.get("samples"), int) and
            all(isinstance(costs.get(k), number) for k in ("float_accuracy", "quantized_accuracy")) and
            all(isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("layer", "grid", "setting")) and
                all(isinstance(r.get(k), number) for k in ("accuracy", "loss_points", "logit_error")) for r in rows))


def cost_lines(costs: dict | None) -> list[str]:
    """The report as text lines (the CLI's); none for a missing or malformed report."""
    if not _well_formed(costs):
        return []
    w = max([16] + [len(r["layer"]) for r in costs["rows"]])       # the layer column fits the longest name
    lines = [f"  what each grid costs alone ({costs['samples']} {costs['data']} samples, before fine-tuning; "
             f"float {100 * costs['float_accuracy']:.2f} %, all quantized {100 * costs['quantized_accuracy']:.2f} %):",
             f"    {'layer':<{w}} {'grid':<8} {'setting':<10} {'accuracy':>9} {'loss':>7} {'logit err':>9}"]
    lines += [f"    {r['layer']:<{w}} {r['grid']:<8} {r['setting']:<10} {100 * r['accuracy']:8.2f}% "
              f"{r['loss_points']:7.2f} {r['logit_error']:9.4f}" for r in costs["rows"]]
    return lines

"""Quantize pass: integer weights (brevitas QAT, power-of-two scale) and the integer time grid.

Weights become ``bits``-bit signed mantissas in the target's format; spike times move onto
T_n steps per window with the hardware's rounding (numerics.fire: first step at or above
threshold). A net put on its first time grid (float until now, windows at their training length)
first gets windows fitted to the ``window_quantile`` of each layer's activations, since time
resolution is L_n / T_n; a net already on a grid keeps its windows. With ``window_search`` each
hidden window is then scaled by the factor that serves the grid best (ttfs.windows.search_windows). Before fine-tuning, the pass
measures what each layer's time grid and weight grid cost alone (hwtune.passes.grid_costs) and
warns, naming the layer and the setting, when it ends more than 1 point below where it started.
"""
from __future__ import annotations

from hwtune.configs import QuantizeConfig
from hwtune.passes.base import PassContext, register, time_grid
from hwtune.passes.grid_costs import advice, measure
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.quant import QuantSpec
from hwtune.ttfs.windows import fit_windows, search_windows


@register(QuantizeConfig)
def quantize(net: TTFSNet, cfg: QuantizeConfig, ctx: PassContext) -> dict:
    steps, input_steps = cfg.grid_request()
    grid = time_grid(net, ctx.target, steps, input_steps, "quantize: ")
    weights = None if cfg.bits is None else ctx.target.weight_format(cfg.bits)
    before = ctx.evaluate(net)
    fitted = net.quant is None
    if fitted:
        fit_windows(net, ctx.train_split()[0], cfg.window_quantile)
    net.set_quant(QuantSpec(grid, weights, delay=ctx.target.synaptic_delay))
    searched = search_windows(net, *ctx.search_split()) if cfg.window_search else None
    quantized = ctx.evaluate(net)
    costs = measure(net, ctx, cfg.report_samples)
    history = ctx.finetune(net, cfg, "quantize fine-tune")
    after = ctx.evaluate(net)
    loss = 100 * (before["accuracy"] - after["accuracy"])
    return {"accuracy_before": before["accuracy"], "accuracy_quantized": quantized["accuracy"],
            "accuracy_after": after["accuracy"], "windows_fitted": fitted, "window_steps": grid,
            "latency_steps": after["latency_steps"], "spikes_per_hidden_neuron": after["spikes_per_hidden_neuron"],
            "window_scales": searched, "finetune": history, "grid_costs": costs, "warnings": advice(costs, net, loss, "quantize", cfg)}

"""Latency pass: shorter windows (fewer steps, quantile-based lengths), then fine-tuning.

Window n becomes the ``window_quantile`` of layer n's positive activations (a neuron whose spike
would come before its window opens fires at the window start: activations saturate at L_n);
the time grid gets ``steps`` per hidden window. Latency = sum_n (T_n + d) steps. Like quantize, the
pass reports what each grid costs alone and warns above 1 point (hwtune.passes.grid_costs).
"""
from __future__ import annotations

from hwtune.configs import LatencyConfig
from hwtune.passes.base import PassContext, register, time_grid
from hwtune.passes.grid_costs import advice, measure
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.quant import QuantSpec
from hwtune.ttfs.windows import fit_windows


@register(LatencyConfig)
def latency(net: TTFSNet, cfg: LatencyConfig, ctx: PassContext) -> dict:
    grid = time_grid(net, ctx.target, cfg.steps, cfg.input_steps, "latency: ")
    before = ctx.evaluate(net)
    fit_windows(net, ctx.train_split()[0], cfg.window_quantile)
    weights = net.quant.weights if net.quant is not None else None
    net.set_quant(QuantSpec(grid, weights, delay=ctx.target.synaptic_delay))
    shortened = ctx.evaluate(net)
    costs = measure(net, ctx, cfg.report_samples)
    history = ctx.finetune(net, cfg, "latency fine-tune")
    after = ctx.evaluate(net)
    loss = 100 * (before["accuracy"] - after["accuracy"])
    return {"accuracy_before": before["accuracy"], "accuracy_shortened": shortened["accuracy"],
            "accuracy_after": after["accuracy"], "latency_steps_before": before.get("latency_steps"),
            "latency_steps": after["latency_steps"], "window_steps": grid, "windows_tau": net.windows.tolist(),
            "finetune": history, "grid_costs": costs, "warnings": advice(costs, net, loss, "latency", cfg)}

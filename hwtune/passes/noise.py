"""Noise pass: evaluate and fine-tune under spike-time jitter, weight noise and threshold noise.

Noise is a condition of the hardware, not of the model: the pass sets ``net.noise`` for its
evaluation and fine-tuning and removes it afterwards; the record keeps the settings and the
accuracies with and without noise. Units: see :class:`hwtune.ttfs.noise.NoiseModel`.
"""
from __future__ import annotations

from hwtune.configs import NoiseConfig
from hwtune.passes.base import PassContext, PassError, register
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.noise import NoiseModel


def noise_model(cfg: NoiseConfig, seed: int) -> NoiseModel:
    """The torch noise model of a noise pass, drawing from a generator seeded with ``seed``."""
    return NoiseModel(jitter=cfg.jitter, weight_mult=cfg.weight_mult, weight_add=cfg.weight_add,
                      threshold=cfg.threshold, units=cfg.units, seed=seed)


@register(NoiseConfig)
def noise(net: TTFSNet, cfg: NoiseConfig, ctx: PassContext) -> dict:
    if cfg.units == "steps" and net.quant is None:
        raise PassError("noise: units 'steps' need a time grid; quantize the net first or use units 'window'")
    clean_before = ctx.evaluate(net)
    try:
        net.noise = noise_model(cfg, ctx.seed + 1)  # evaluation draws: the same before and after
        noisy_before = ctx.evaluate(net)
        net.noise = noise_model(cfg, ctx.seed)
        history = [] if cfg.eval_only else ctx.finetune(net, cfg, "noise fine-tune")
        net.noise = noise_model(cfg, ctx.seed + 1)
        noisy_after = noisy_before if cfg.eval_only else ctx.evaluate(net)
    finally:
        net.noise = None
    clean_after = ctx.evaluate(net)
    return {"accuracy_before": clean_before["accuracy"], "accuracy_after": clean_after["accuracy"],
            "noisy_accuracy_before": noisy_before["accuracy"], "noisy_accuracy_after": noisy_after["accuracy"],
            "finetune": history}

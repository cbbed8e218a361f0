"""Noise pass: evaluate and fine-tune under spike-time jitter, weight noise and threshold noise.

Noise is a condition of the hardware, not of the model: the pass sets ``net.noise`` for its
evaluation and fine-tuning and removes it afterwards; the record keeps the settings and the
accuracies with and without noise. Units: see :class:`hwtune.ttfs.noise.NoiseModel`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hwtune.passes.base import FinetuneOptions, PassContext, PassError, register
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.noise import NoiseModel


@dataclass
class NoiseConfig(FinetuneOptions):
    pass_name: ClassVar[str] = "noise"
    jitter: float = 0.0        # spike-time jitter std (fraction of the window, or steps)
    weight_mult: float = 0.0   # multiplicative weight noise std
    weight_add: float = 0.0    # additive weight noise std, relative to the largest weight
    threshold: float = 0.0     # threshold noise std (fraction of the window, or steps)
    units: str = "window"      # "window" or "steps" (quantized nets)
    eval_only: bool = False    # measure robustness without fine-tuning

    def noise_model(self, seed: int) -> NoiseModel:
        return NoiseModel(jitter=self.jitter, weight_mult=self.weight_mult, weight_add=self.weight_add,
                          threshold=self.threshold, units=self.units, seed=seed)


@register(NoiseConfig)
def noise(net: TTFSNet, cfg: NoiseConfig, ctx: PassContext) -> dict:
    if cfg.units == "steps" and net.quant is None:
        raise PassError("noise: units 'steps' need a time grid; quantize the net first or use units 'window'")
    clean_before = ctx.evaluate(net)
    try:
        net.noise = cfg.noise_model(ctx.seed + 1)  # evaluation draws: the same before and after
        noisy_before = ctx.evaluate(net)
        net.noise = cfg.noise_model(ctx.seed)
        history = [] if cfg.eval_only else ctx.finetune(net, cfg, "noise fine-tune")
        net.noise = cfg.noise_model(ctx.seed + 1)
        noisy_after = noisy_before if cfg.eval_only else ctx.evaluate(net)
    finally:
        net.noise = None
    clean_after = ctx.evaluate(net)
    return {"accuracy_before": clean_before["accuracy"], "accuracy_after": clean_after["accuracy"],
            "noisy_accuracy_before": noisy_before["accuracy"], "noisy_accuracy_after": noisy_after["accuracy"],
            "finetune": history}

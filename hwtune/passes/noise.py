"""Noise pass: evaluate and fine-tune under device noise (hwtune.noise), on held-out devices.

Noise is a condition of the hardware, not of the model: the pass sets ``net.noise`` for its
evaluation and fine-tuning and removes it afterwards. Levels default to the target's (a model
prepared for an analog target is hardened against that target). Fine-tuning draws a new device
instance every ``device_every`` batches and new trial noise every batch (seed stream TRAIN), so
the net learns to work across devices; the noisy accuracy is the mean over ``devices`` held-out
device instances (stream EVAL: never one the net was trained on), with its standard deviation.
"""
from __future__ import annotations

import statistics

import torch

from hwtune.configs import NoiseConfig
from hwtune.noise import EVAL, TRAIN, Device, NoiseSpec, rng
from hwtune.passes.base import PassContext, PassError, register
from hwtune.training import evaluate
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.noise import NoiseState


def training_noise(net: TTFSNet, spec: NoiseSpec, seed: int, device_every: int = 1) -> NoiseState:
    """Noise for fine-tuning: a new device every ``device_every`` batches, new trials every batch."""
    return NoiseState(spec, net.geometry(), trial_rng=rng(TRAIN, seed, 1), device_rng=rng(TRAIN, seed, 0),
                      device_every=device_every)


def evaluation_noise(net: TTFSNet, spec: NoiseSpec, seed: int, index: int) -> NoiseState:
    """Held-out device ``index`` (and its trial draws) of stream EVAL; the emulator draws the same
    (hwtune.workflow.emulate_artifact with the same spec, seed and index)."""
    device = Device.draw(spec, net.geometry(), rng(EVAL, seed, 2 * index)) if spec.fixed_pattern else None
    return NoiseState(spec, net.geometry(), trial_rng=rng(EVAL, seed, 2 * index + 1), device=device)


@torch.no_grad()
def evaluate_under_noise(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, spec: NoiseSpec, devices: int,
                         seed: int) -> dict:
    """Accuracy under ``spec`` on ``devices`` held-out device instances: mean, standard deviation
    (over devices), each device's accuracy, and spikes per hidden neuron (mean)."""
    accuracies, spikes = [], []
    saved = net.noise
    try:
        for i in range(devices):
            net.noise = evaluation_noise(net, spec, seed, i)
            result = evaluate(net, x, y)
            accuracies.append(result["accuracy"])
            spikes.append(result["spikes_per_hidden_neuron"])
    finally:
        net.noise = saved
    return {"accuracy": statistics.fmean(accuracies), "accuracy_std": statistics.pstdev(accuracies),
            "accuracies": accuracies, "devices": devices, "spikes_per_hidden_neuron": statistics.fmean(spikes),
            "noise": spec.to_dict()}


@register(NoiseConfig)
def noise(net: TTFSNet, cfg: NoiseConfig, ctx: PassContext) -> dict:
    spec = cfg.spec(ctx.target.noise)
    if not spec.any:
        raise PassError(f"noise: target {ctx.target.name} has no noise and no level was given (e.g. --jitter 0.3)")
    x, y = ctx.test_split()
    clean_before = ctx.evaluate(net)
    noisy_before = evaluate_under_noise(net, x, y, spec, cfg.devices, ctx.seed)
    history, noisy_after = [], noisy_before
    if not cfg.eval_only:
        net.noise = training_noise(net, spec, ctx.seed, cfg.device_every)
        try:
            history = ctx.finetune(net, cfg, "noise fine-tune")
        finally:
            net.noise = None
        noisy_after = evaluate_under_noise(net, x, y, spec, cfg.devices, ctx.seed)
    clean_after = ctx.evaluate(net) if not cfg.eval_only else clean_before
    return {"accuracy_before": clean_before["accuracy"], "accuracy_after": clean_after["accuracy"],
            "noisy_accuracy_before": noisy_before["accuracy"], "noisy_accuracy_after": noisy_after["accuracy"],
            "noisy_std_before": noisy_before["accuracy_std"], "noisy_std_after": noisy_after["accuracy_std"],
            "noise": spec.to_dict(), "devices": cfg.devices, "finetune": history}

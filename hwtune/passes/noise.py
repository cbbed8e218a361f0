"""Noise pass: evaluate and fine-tune under device noise (hwtune.device_noise), on held-out devices.

Noise is a condition of the hardware, not of the model: the pass applies it for its evaluation
and fine-tuning only (``net.conditions(noise=...)``). Levels default to the target's (a model
prepared for an analog target is hardened against that target). Fine-tuning draws a new device
instance every ``device_every`` batches and new trial noise every batch (seed stream TRAIN), so
the net learns to work across devices; the noisy accuracy is the mean over ``devices`` held-out
device instances (stream EVAL: never one the net was trained on), with its standard deviation.

With ``window_search`` the pass first rescales the hidden windows under the noise
(:func:`search_window_scale`), then fine-tunes.
"""
from __future__ import annotations

import statistics

import torch

from hwtune.configs import NoiseConfig
from hwtune.device_noise import EVAL, TRAIN, Device, NoiseSpec, rng
from hwtune.passes.base import PassContext, PassError, register
from hwtune.training import evaluate
from hwtune.ttfs.net import TTFSNet
from hwtune.ttfs.noise_state import NoiseState
from hwtune.ttfs.windows import set_windows

#: Scales f the window search tries for every hidden window (L_n <- f L_n): 1, 2^-1/2, ..., 1/4.
WINDOW_SCALES = tuple(2.0 ** (-i / 2) for i in range(5))
#: Random training samples, and device instances of stream TRAIN, that score each scale.
SEARCH_SAMPLES, SEARCH_DEVICES = 2000, 2


def training_noise(net: TTFSNet, spec: NoiseSpec, seed: int, device_every: int = 1) -> NoiseState:
    """Noise for fine-tuning: a new device every ``device_every`` batches, new trials every batch."""
    return NoiseState(spec, net.geometry(), trial_rng=rng(TRAIN, seed, 1), device_rng=rng(TRAIN, seed, 0),
                      device_every=device_every)


def fixed_noise(net: TTFSNet, spec: NoiseSpec, stream: int, seed: int, index: int) -> NoiseState:
    """Device instance ``index`` of ``stream`` (draw 2 index) with its trial draws (draw 2 index + 1)."""
    device = Device.draw(spec, net.geometry(), rng(stream, seed, 2 * index)) if spec.fixed_pattern else None
    return NoiseState(spec, net.geometry(), trial_rng=rng(stream, seed, 2 * index + 1), device=device)


def evaluation_noise(net: TTFSNet, spec: NoiseSpec, seed: int, index: int) -> NoiseState:
    """Held-out device ``index`` (and its trial draws) of stream EVAL; the emulator draws the same
    (hwtune.workflow.emulate_artifact with the same spec, seed and index)."""
    return fixed_noise(net, spec, EVAL, seed, index)


def _evaluate_on(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, states: list[NoiseState | None]) -> list[dict]:
    """evaluate() of ``net`` under each noise state in turn (None: noiseless)."""
    results = []
    for state in states:
        with net.conditions(noise=state):
            results.append(evaluate(net, x, y))
    return results


@torch.no_grad()
def evaluate_under_noise(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, spec: NoiseSpec, devices: int,
                         seed: int) -> dict:
    """Accuracy under ``spec`` on ``devices`` held-out device instances: mean, standard deviation
    (over devices), each device's accuracy, and spikes per hidden neuron (mean)."""
    results = _evaluate_on(net, x, y, [evaluation_noise(net, spec, seed, i) for i in range(devices)])
    accuracies = [r["accuracy"] for r in results]
    spikes = [r["spikes_per_hidden_neuron"] for r in results]
    return {"accuracy": statistics.fmean(accuracies), "accuracy_std": statistics.pstdev(accuracies),
            "accuracies": accuracies, "devices": devices, "spikes_per_hidden_neuron": statistics.fmean(spikes),
            "noise": spec.to_dict()}


@torch.no_grad()
def search_window_scale(net: TTFSNet, spec: NoiseSpec, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    """Rescale every hidden window, L_n <- f L_n, by the f of WINDOW_SCALES with the best accuracy
    under ``spec`` on SEARCH_SAMPLES random samples of (x, y) (training data) and SEARCH_DEVICES
    device instances of stream TRAIN (never an evaluation device); ties keep the longer window.

    Why it pays under timing noise: an activation x is k = x T_n / L_n steps of its window, while
    jitter and threshold noise move spikes by a fraction of the window's T_n steps whatever L_n is
    (hwtune.device_noise), so a shorter window makes the same shift a smaller error in x; the price is
    that activations above f L_n saturate (k = T_n). Noiseless (``spec`` all 0), the score is the
    clean accuracy. Returns {"window_scale": f, "scores": {f: accuracy}}.
    """
    if net.quant is None:
        raise PassError("noise: window_search needs a quantized net (a float net has no steps per window)")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:SEARCH_SAMPLES]
    xs, ys = x[pick], y[pick]
    states = [fixed_noise(net, spec, TRAIN, seed, 1 + i) for i in range(SEARCH_DEVICES)] if spec.any else [None]
    base, scores = net.windows.clone(), {}
    for f in WINDOW_SCALES:
        set_windows(net, (f * base).tolist())
        scores[f] = statistics.fmean(r["accuracy"] for r in _evaluate_on(net, xs, ys, states))
    best = max(WINDOW_SCALES, key=lambda f: scores[f])          # max keeps the first (longest) of equals
    set_windows(net, (best * base).tolist())
    return {"window_scale": best, "scores": {f"{f:.3g}": a for f, a in scores.items()}}


@register(NoiseConfig)
def noise(net: TTFSNet, cfg: NoiseConfig, ctx: PassContext) -> dict:
    spec = cfg.spec(ctx.target.noise)
    if not spec.any:
        raise PassError(f"noise: target {ctx.target.name} has no noise and no level was given (e.g. --jitter 0.3)")
    if cfg.window_search and (cfg.eval_only or net.quant is None):
        raise PassError("noise: window_search rescales a quantized net's windows: it needs a quantized net "
                        "and cannot be combined with eval_only")
    x, y = ctx.test_split()
    clean_before = ctx.evaluate(net)
    noisy_before = evaluate_under_noise(net, x, y, spec, cfg.devices, ctx.seed)
    history, noisy_after, search = [], noisy_before, None
    if not cfg.eval_only:
        if cfg.window_search:
            search = search_window_scale(net, spec, *ctx.train_split(), ctx.seed)
        with net.conditions(noise=training_noise(net, spec, ctx.seed, cfg.device_every)):
            history = ctx.finetune(net, cfg, "noise fine-tune")
        noisy_after = evaluate_under_noise(net, x, y, spec, cfg.devices, ctx.seed)
    clean_after = ctx.evaluate(net) if not cfg.eval_only else clean_before
    return {"accuracy_before": clean_before["accuracy"], "accuracy_after": clean_after["accuracy"],
            "noisy_accuracy_before": noisy_before["accuracy"], "noisy_accuracy_after": noisy_after["accuracy"],
            "noisy_std_before": noisy_before["accuracy_std"], "noisy_std_after": noisy_after["accuracy_std"],
            "noise": spec.to_dict(), "devices": cfg.devices, "window_search": search, "finetune": history}

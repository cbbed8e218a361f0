"""One training / fine-tuning loop for TTFS nets (exact spike-time gradient) and ReLU twins.

The TTFS gradient is autograd through the closed-form spike time (no surrogate), or
straight-through quantizers on top of it for quantized nets. Defaults follow the reference
code: Adam (eps 1e-7), lr x 0.9 per 5000 steps (continuous), batch 8, cross-entropy on logits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from hwtune.data import batches
from hwtune.ttfs.net import TTFSNet


@dataclass
class TrainConfig:
    epochs: float = 1.0          # fractional epochs allowed (fine-tuning on part of an epoch)
    lr: float = 5e-4
    batch_size: int = 8
    seed: int = 0
    lr_decay: float = 0.9        # multiplied per ``decay_steps`` optimizer steps, continuously
    decay_steps: int = 5000
    adam_eps: float = 1e-7
    adaptive_windows: bool = True  # grow-only window rule (float TTFS nets only)
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def make_optimizer(model: nn.Module, cfg: TrainConfig):
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cfg.lr_decay ** (step / cfg.decay_steps))
    return opt, sched


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, desc: str = "train") -> list[dict]:
    """Train in place; returns one record per epoch (mean loss, train accuracy, steps)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt, sched = make_optimizer(model, cfg)
    is_ttfs = isinstance(model, TTFSNet)
    grow = is_ttfs and cfg.adaptive_windows and model.quant is None and not model.saturate
    if is_ttfs:
        model.track_windows = grow
    total_steps = int(round(cfg.epochs * len(x) / cfg.batch_size))
    history, step = [], 0
    model.train()
    try:
        with tqdm(total=total_steps, desc=desc, disable=not cfg.progress, unit="step", leave=False) as bar:
            while step < total_steps:
                loss_sum, correct, seen = 0.0, 0, 0
                for xb, yb in batches(x, y, cfg.batch_size, shuffle=True, generator=gen):
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    if grow:
                        model.grow_windows()
                    loss_sum += loss.item() * len(yb)
                    correct += int((logits.argmax(1) == yb).sum())
                    seen += len(yb)
                    step += 1
                    bar.update(1)
                    if step >= total_steps:
                        break
                history.append({"loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                                "steps": step})
    finally:
        if is_ttfs:
            model.track_windows = False
        model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, progress: bool = False) -> torch.Tensor:
    """Predicted class of every sample (argmax of logits; ties go to the lowest index)."""
    model.eval()
    out = [model(x[i:i + batch_size]).argmax(1)
           for i in tqdm(range(0, len(x), batch_size), desc="predict", disable=not progress, leave=False)]
    return torch.cat(out)


@torch.no_grad()
def evaluate(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
             progress: bool = False) -> dict:
    """Accuracy, spikes per neuron (hidden only / including inputs; silent neurons do not count)
    and latency (tau_c, and steps when quantized) of a TTFS net."""
    net.eval()
    correct = spikes_hidden = spikes_input = 0
    preds = []
    neurons_hidden = neurons_input = 0
    for i in tqdm(range(0, len(x), batch_size), desc="evaluate", disable=not progress, leave=False):
        xb = x[i:i + batch_size]
        logits, acts = net.forward_with_activations(xb)
        preds.append(logits.argmax(1))
        spikes_input += int((acts[0] > 0).sum())
        spikes_hidden += sum(int((a > 0).sum()) for a in acts[1:])
        neurons_input = acts[0][0].numel()
        neurons_hidden = sum(a[0].numel() for a in acts[1:])
    pred = torch.cat(preds)
    n = len(x)
    result = {
        "accuracy": float((pred == y).double().mean()),
        "n": n,
        "spikes_per_hidden_neuron": spikes_hidden / (n * neurons_hidden),
        "spikes_per_neuron_incl_input": (spikes_hidden + spikes_input) / (n * (neurons_hidden + neurons_input)),
        "latency_tau": net.latency(),
    }
    if net.quant is not None:
        result["latency_steps"] = net.latency_steps()
        result["window_steps"] = list(net.quant.steps)
    return result

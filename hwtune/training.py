"""One training / fine-tuning loop for TTFS nets (exact spike-time gradient) and ReLU twins.

The TTFS gradient is autograd through the closed-form spike time (no surrogate), or
straight-through quantizers on top of it for quantized nets. Settings: hwtune.configs.TrainConfig
(the reference code's recipe by default: Adam eps 1e-7, lr x 0.9 per 5000 steps, batch 8).
Fine-tuning may distil from a teacher (the net before the pass: ``distill``). Every pass over
data streams mini-batches; the model may live on a GPU (``device``), the data
stays on the CPU and moves batch by batch.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwtune import distributed, progress
from hwtune.interrupts import raise_if_stopped
from hwtune.configs import TrainConfig
from hwtune.data import augment_batch, batches
from hwtune.errors import ConfigError
from hwtune.ttfs.net import TTFSNet


#: Steps between updates of the mean training loss of the epoch on the progress bar (reading it waits for the device).
LOSS_EVERY = 10
#: Most samples per evaluation batch, and the bytes one batch's per-neuron arrays may take.
EVAL_BATCH = 1000
EVAL_BYTES = 64 * 2 ** 20


def eval_batch(geometry) -> int:
    """Samples per evaluation batch for a net of these layers (hwtune.device_noise.Geometry: a TTFSNet's
    ``geometry()``, or an artifact's layers' ``geometry()``): every pass over data streams batches of
    bounded memory (an int64 or float64 array of the widest layer takes EVAL_BYTES at most). The
    torch model and the emulator get the same batches from the same layers (trial noise is drawn
    batch by batch, so shared draws need the same batches)."""
    widest = max((g.neurons for g in geometry), default=1)
    return max(1, min(EVAL_BATCH, EVAL_BYTES // (8 * max(1, widest))))


def check_batches(n: int, batch_size: int) -> None:
    """Under torchrun every batch is split among the processes (hwtune.distributed.shard): refuse a
    batch size, or a last batch of the ``n`` samples, that leaves a process no sample."""
    ranks = distributed.world_size()
    last = n % batch_size or batch_size
    if ranks > 1 and min(batch_size, last, n) < ranks:
        which = f"batch_size = {batch_size}" if min(batch_size, n) < ranks else \
            f"the last batch ({n} samples in batches of {batch_size} leave {last})"
        raise ConfigError(f"{which}: under torchrun each of the {ranks} processes needs at least one sample of every "
                          f"batch; choose a batch size of at least {ranks} that leaves no smaller last batch")


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' (refused when no GPU is visible) or 'auto' (cuda when present). Under torchrun
    each process of a node takes its own GPU: cuda:LOCAL_RANK (hwtune.distributed)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA device (use cpu or auto)")
    if name == "cuda" and distributed.active():
        torch.cuda.set_device(distributed.local_rank())
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_optimizer(model: nn.Module, cfg: TrainConfig, total_steps: int, schedule: str = "decay"):
    """Adam and its schedule (hwtune.configs.SCHEDULES): lr x lr_decay^(step / decay_steps) ("decay"),
    or lr (1 + cos(pi step / total_steps)) / 2 ("cosine")."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    if schedule == "cosine":
        factor = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))  # noqa: E731
    else:
        factor = lambda step: cfg.lr_decay ** (step / cfg.decay_steps)  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def distillation_loss(logits: torch.Tensor, y: torch.Tensor, teacher: nn.Module | None, xb: torch.Tensor,
                      weight: float) -> torch.Tensor:
    """(1 - a) CE(logits, y) + a KL(softmax(teacher(xb)) || softmax(logits)), a = ``weight`` (CE alone
    without a teacher)."""
    loss = F.cross_entropy(logits, y)
    if teacher is None or weight == 0:
        return loss
    with torch.no_grad():
        target = F.log_softmax(teacher(xb).to(logits.dtype), dim=1)
    kl = F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean")
    return (1 - weight) * loss + weight * kl


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int = 0,
          desc: str = "train", teacher: nn.Module | None = None, distill: float = 0.0,
          schedule: str = "decay") -> list[dict]:
    """Train in place on ``cfg.device`` (the model is returned to the CPU afterwards); returns one
    record per epoch (mean loss, train accuracy, steps). Batches and augmentation draw from a
    generator seeded with ``seed``, so a run is reproducible by seed.

    Under torchrun (hwtune.distributed) every rank draws the same global batches and trains on its
    slice of each, through DistributedDataParallel: the result equals one process on the same
    global batches (up to float summation order)."""
    check_batches(len(x), cfg.batch_size)
    gen = torch.Generator().manual_seed(seed)
    device = resolve_device(cfg.device)
    model.to(device)
    distributed.init(device)
    step_model = torch.nn.parallel.DistributedDataParallel(model) if distributed.active() else model
    is_ttfs = isinstance(model, TTFSNet)
    grow = is_ttfs and cfg.adaptive_windows and model.quant is None and not model.saturate
    total_steps = int(round(cfg.epochs * len(x) / cfg.batch_size))
    opt, sched = make_optimizer(model, cfg, total_steps, schedule)
    if teacher is not None:
        teacher.to(device).eval()
    history, step = [], 0
    model.train()
    try:
        with (model.conditions(track_windows=grow) if is_ttfs else contextlib.nullcontext()), \
                progress.bar(total=total_steps, desc=desc, unit="step") as bar:
            while step < total_steps:
                loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
                for xb, yb in batches(x, y, cfg.batch_size, shuffle=True, generator=gen):
                    if cfg.augment == "shift-flip":
                        xb = augment_batch(xb, gen)
                    xb, yb = distributed.shard(xb).to(device), distributed.shard(yb).to(device)
                    logits = step_model(xb)
                    loss = distillation_loss(logits, yb, teacher, xb, distill)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    if grow:
                        model.batch_max = [distributed.all_max(m, device) for m in model.batch_max]
                        model.grow_windows()
                    loss_sum += loss.detach() * len(yb)
                    correct += (logits.detach().argmax(1) == yb).sum()
                    seen += len(yb)
                    step += 1
                    if not bar.disable and (step % LOSS_EVERY == 0 or step == total_steps):
                        bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.4f}", refresh=False)
                    bar.update(1)
                    raise_if_stopped()
                    if step >= total_steps:
                        break
                history.append({"loss": float(loss_sum) / max(seen, 1), "train_accuracy": float(correct) / max(seen, 1),
                                "steps": step})
    finally:
        model.eval()
        model.to("cpu")
        if teacher is not None:
            teacher.to("cpu")
    return history


@torch.no_grad()
def logits_of(net: TTFSNet, x: torch.Tensor) -> torch.Tensor:
    """The logits of ``net`` on every sample of x (float64), in batches of bounded memory (eval_batch)."""
    net.eval()
    size = eval_batch(net.geometry())
    device = model_device(net)
    return torch.cat([net(x[i:i + size].to(device)).double().cpu() for i in range(0, len(x), size)])


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Predicted class of every sample (argmax of logits; ties go to the lowest index), in batches."""
    model.eval()
    batch_size = batch_size or (eval_batch(model.geometry()) if isinstance(model, TTFSNet) else EVAL_BATCH)
    device = model_device(model)
    out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu()
           for i in progress.bar(range(0, len(x), batch_size), desc="predict")]
    return torch.cat(out)


@torch.no_grad()
def evaluate(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> dict:
    """Accuracy, spikes per neuron (hidden only / including inputs; silent neurons do not count)
    and latency (tau_c, and steps when quantized) of a TTFS net, streaming batches (eval_batch)."""
    net.eval()
    batch_size = batch_size or eval_batch(net.geometry())
    device = model_device(net)
    correct = spikes_hidden = spikes_input = 0
    neurons_hidden = neurons_input = 0
    for i in progress.bar(range(0, len(x), batch_size), desc="evaluate"):
        xb = x[i:i + batch_size].to(device)
        logits, acts = net.forward_with_activations(xb)
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
        spikes_input += int((acts[0] > 0).sum())
        spikes_hidden += sum(int((a > 0).sum()) for a in acts[1:])
        neurons_input = acts[0][0].numel()
        neurons_hidden = sum(a[0].numel() for a in acts[1:])
    n = len(x)
    result = {
        "accuracy": correct / n,
        "n": n,
        "spikes_per_hidden_neuron": spikes_hidden / (n * neurons_hidden),
        "spikes_per_neuron_incl_input": (spikes_hidden + spikes_input) / (n * (neurons_hidden + neurons_input)),
        "latency_tau": net.latency(),
    }
    if net.quant is not None:
        result["latency_steps"] = net.latency_steps()
        result["window_steps"] = list(net.quant.steps)
    return result

"""The pass contract.

A pass is a config dataclass (hwtune.configs: QuantizeConfig, NoiseConfig, LatencyConfig) plus a
handler registered for that config type. :func:`run_pass` takes a :class:`~hwtune.ttfs.TTFSNet` and
returns ``(changed net, record)``; the net it was given is never touched. The handler works on
run_pass's own copy: it changes the copy's quantization state, windows or weights, fine-tunes it with
the exact spike-time gradient and returns the record ``{"pass", "config", "accuracy_before",
"accuracy_after", ...}``, which run_pass appends to the copy's ``info["history"]``. A pass checks its
settings against the target before any training and raises :class:`PassError` (or ``TargetError``)
with a clear message. The target the net is prepared for is recorded in ``net.info["target"]`` (its
whole spec) by :func:`run_pass`.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from hwtune.configs import FinetuneOptions, TrainConfig
from hwtune.data import Dataset, subset
from hwtune.errors import HwtuneError
from hwtune.passes.grid_costs import cost_lines
from hwtune.provenance import provenance
from hwtune.target import TargetSpec
from hwtune.training import evaluate, train
from hwtune.ttfs.net import TTFSNet


class PassError(HwtuneError, ValueError):
    """A pass that cannot run with these settings."""


@dataclass
class PassContext:
    """What a pass needs besides the net: data, target, seed, and how much data to use."""

    data: Dataset
    target: TargetSpec
    seed: int = 0
    train_samples: int | None = None   # fine-tune on a random subset (None = all)
    samples: int | None = None         # evaluate on the first N test samples (None = all)
    teacher: TTFSNet | None = None     # the net as the pass got it, for distillation (set by run_pass)

    @classmethod
    def for_net(cls, net: TTFSNet, data: Dataset, target: TargetSpec, seed: int = 0, train_samples: int | None = None,
                samples: int | None = None) -> "PassContext":
        """The context of passes on ``net`` (the one way callers build it): ``data`` cast to the net's
        dtype, fine-tuning on ``train_samples`` random training samples, evaluation on the first ``samples``."""
        from hwtune.workflow import cast
        return cls(data=cast(data, net.dtype), target=target, seed=seed, train_samples=train_samples, samples=samples)

    def train_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = subset(self.data, n_train=self.train_samples, seed=self.seed) if self.train_samples else self.data
        return d.train_x, d.train_y

    def search_split(self, samples: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` random samples of the training split (seeded): what searches and reports score on."""
        x, y = self.train_split()
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[:samples]
        return x[pick], y[pick]

    def test_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.test_x[:self.samples], self.data.test_y[:self.samples]

    def evaluate(self, net: TTFSNet) -> dict:
        return evaluate(net, *self.test_split())

    def finetune(self, net: TTFSNet, options: FinetuneOptions, desc: str) -> list[dict]:
        if options.epochs <= 0:
            return []
        cfg = TrainConfig(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size,
                          adaptive_windows=False, device=options.device)
        return train(net, *self.train_split(), cfg, seed=self.seed, desc=desc, schedule=options.schedule,
                     teacher=self.teacher if options.distill else None, distill=options.distill)


_HANDLERS: dict[type, Callable[[TTFSNet, object, PassContext], dict]] = {}


def register(config_type: type):
    """Register ``handler(net, config, ctx) -> record`` for ``config_type``."""
    def wrap(handler):
        _HANDLERS[config_type] = handler
        return handler
    return wrap


def run_pass(net: TTFSNet, config, ctx: PassContext) -> tuple[TTFSNet, dict]:
    """(changed copy of ``net``, record) of the pass registered for ``type(config)``, run with torch's
    RNG seeded by ``ctx.seed``; the copy records the pass in ``info['history']`` and the target in
    ``info['target']`` (not for an ``eval_only`` pass). ``net`` itself is left as it was. A net
    prepared for another target than ``ctx.target`` is refused (hwtune.workflow.resolve_target),
    except by quantize."""
    from hwtune.workflow import resolve_target

    if net.info.get("network") == "relu":
        raise PassError(f"{config.pass_name}: this is a ReLU net (trained with --network relu); passes work on TTFS "
                        "nets: convert it first (`hwtune convert MODEL`, hwtune.convert)")
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise PassError(f"no pass registered for {type(config).__name__}")
    # the model stays on its target: only quantize may move it to another (re-quantizing it)
    resolve_target(net, ctx.target, config.pass_name, may_change=config.pass_name == "quantize")
    ctx = dataclasses.replace(ctx, teacher=net if config.distill else None)   # the given net is never changed
    net = copy.deepcopy(net)
    torch.manual_seed(ctx.seed)
    record = {"pass": config.pass_name, "config": config.to_dict(), **handler(net, config, ctx),
              "target": ctx.target.name, "provenance": provenance(ctx.seed)}
    if not getattr(config, "eval_only", False):
        net.info.setdefault("history", []).append(record)
        net.info["target"] = ctx.target.to_dict()
    return net, record


def record_lines(record: dict) -> list[str]:
    """A pass record (or convert's) for people: accuracy before -> after, and what the pass is for
    (under noise: the noise and the held-out devices, before -> after; the grid it ran on; what
    each layer's grids cost, hwtune.passes.grid_costs). A key
    missing from a record read from a file shows as '–'."""
    def pct(key) -> str:
        x = record.get(key)
        return f"{100 * x:.2f} %" if isinstance(x, (int, float)) else "–"
    if record.get("pass") == "convert":
        return [f"convert: ReLU {pct('relu_accuracy')} -> TTFS {pct('accuracy_after')}, prediction agreement "
                f"{pct('prediction_agreement')}"]
    lines = [f"{record.get('pass', '–')}: accuracy {pct('accuracy_before')} -> {pct('accuracy_after')} on target "
             f"{record.get('target', '–')}"]
    if "accuracy_quantized" in record:
        lines.append(f"  quantized, before fine-tuning: {pct('accuracy_quantized')}")
    if "noisy_accuracy_before" in record:
        noise = record.get("noise") if isinstance(record.get("noise"), dict) else {}
        levels = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in noise.items() if v) or "none"
        lines.append(f"  under noise ({levels}; mean over {record.get('devices', '–')} held-out device instances): "
                     f"{pct('noisy_accuracy_before')} -> {pct('noisy_accuracy_after')}")
    if "latency_steps" in record:
        lines.append(f"  latency {record['latency_steps']} steps (windows {record.get('window_steps')} steps)")
    costs = record.get("grid_costs")
    return lines + (cost_lines(costs) if isinstance(costs, dict) else [])


def time_grid(net: TTFSNet, target: TargetSpec, steps=None, input_steps: int | None = None,
              where: str = "") -> list[int]:
    """Window steps [T_0 (input), T_1..T_N]: ``steps`` is one int for every hidden layer or a
    list per hidden layer (default: the net's current grid, else the target's default);
    ``input_steps`` defaults to the current grid's T_0, else the target's. Checked against the target."""
    current = net.quant.steps if net.quant is not None else None
    if steps is None:
        hidden = current[1:] if current else [target.time.steps_per_layer] * net.n_hidden
    elif isinstance(steps, int):
        hidden = [steps] * net.n_hidden
    else:
        hidden = [int(s) for s in steps]
        if len(hidden) != net.n_hidden:
            raise PassError(f"{where}steps lists {len(hidden)} windows but the net has {net.n_hidden} hidden layers")
    if input_steps is None:
        input_steps = current[0] if current else target.time.input_steps
    grid = [int(input_steps), *hidden]
    target.check_steps(grid, where)
    return grid

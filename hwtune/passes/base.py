"""The pass contract.

A pass is a config dataclass plus a handler registered for that config type. A pass
takes a :class:`~hwtune.ttfs.TTFSNet`, MUTATES it in place (changes its quantization state,
windows or weights, then fine-tunes it with the exact spike-time gradient) and returns a record
``{"pass", "config", "accuracy_before", "accuracy_after", ...}`` that :func:`run_pass` also
appends to ``net.info["history"]``. A pass checks its settings against the target before any
training and raises :class:`PassError` (or ``TargetError``) with a clear message.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch

from hwtune.data import Dataset, subset
from hwtune.provenance import provenance
from hwtune.target import TargetSpec
from hwtune.train import TrainConfig, evaluate, train
from hwtune.ttfs.net import TTFSNet


class PassError(ValueError):
    """A pass that cannot run with these settings."""


@dataclass
class FinetuneOptions:
    """Fine-tuning shared by every pass (0 epochs = apply the change only)."""

    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 32

    @classmethod
    def from_dict(cls, d: dict, where: str = ""):
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise PassError(f"{where}unknown setting(s) {sorted(unknown)} for pass {cls.pass_name!r}; "
                            f"known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PassContext:
    """What a pass needs besides the net: data, target, seed, and how much data to use."""

    data: Dataset
    target: TargetSpec
    seed: int = 0
    progress: bool = True
    train_samples: int | None = None   # fine-tune on a subset (None = all)
    eval_samples: int | None = None    # evaluate on a subset of the test set (None = all)

    def train_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = subset(self.data, n_train=self.train_samples, seed=self.seed) if self.train_samples else self.data
        return d.train_x, d.train_y

    def test_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = subset(self.data, n_test=self.eval_samples, seed=self.seed) if self.eval_samples else self.data
        return d.test_x, d.test_y

    def evaluate(self, net: TTFSNet) -> dict:
        return evaluate(net, *self.test_split(), progress=self.progress)

    def finetune(self, net: TTFSNet, options: FinetuneOptions, desc: str) -> list[dict]:
        if options.epochs <= 0:
            return []
        cfg = TrainConfig(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size, seed=self.seed,
                          adaptive_windows=False, progress=self.progress)
        return train(net, *self.train_split(), cfg, desc=desc)


_HANDLERS: dict[type, Callable[[TTFSNet, object, PassContext], dict]] = {}
PASSES: dict[str, type] = {}


def register(config_type: type):
    """Register ``handler(net, config, ctx) -> record`` for ``config_type`` (its ``pass_name``)."""
    def wrap(handler):
        _HANDLERS[config_type] = handler
        PASSES[config_type.pass_name] = config_type
        return handler
    return wrap


def run_pass(net: TTFSNet, config, ctx: PassContext) -> dict:
    """Run the pass registered for ``type(config)``; record it in ``net.info['history']``."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise PassError(f"no pass registered for {type(config).__name__}")
    record = {"pass": config.pass_name, "config": config.to_dict(), **handler(net, config, ctx),
              "provenance": provenance(ctx.seed)}
    net.info.setdefault("history", []).append(record)
    return record


def parse_pass(name: str, settings: dict | None, where: str = ""):
    """Config object of the pass called ``name`` from a settings mapping (recipes, sweeps)."""
    if name not in PASSES:
        raise PassError(f"{where}unknown pass {name!r}; known: {', '.join(sorted(PASSES))}")
    if settings is not None and not isinstance(settings, dict):
        raise PassError(f"{where}settings of pass {name!r} must be a mapping, got {settings!r}")
    return PASSES[name].from_dict(settings or {}, where)


def time_grid(net: TTFSNet, target: TargetSpec, steps=None, input_steps: int | None = None,
              where: str = "") -> list[int]:
    """Window steps [T_0 (input), T_1..T_N]: ``steps`` is one int for every hidden layer or a
    list per hidden layer (default: the net's current grid, else the target's default);
    ``input_steps`` defaults to the current grid's T_0, else the target's. Checked against the target."""
    current = net.quant.steps if net.quant is not None else None
    if steps is None:
        hidden = current[1:] if current else [target.steps_per_layer] * net.n_hidden
    elif isinstance(steps, int):
        hidden = [steps] * net.n_hidden
    else:
        hidden = [int(s) for s in steps]
        if len(hidden) != net.n_hidden:
            raise PassError(f"{where}steps lists {len(hidden)} windows but the net has {net.n_hidden} hidden layers")
    if input_steps is None:
        input_steps = current[0] if current else target.input_steps
    grid = [int(input_steps), *hidden]
    target.check_steps(grid, where)
    return grid

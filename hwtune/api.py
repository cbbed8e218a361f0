"""The Python API: the CLI's verbs as functions on objects (``import hwtune`` exposes them).

    import hwtune
    data = hwtune.load_dataset("digits")
    net = hwtune.train(data, arch="fc-small", epochs=20, lr=2e-3, batch_size=16)
    net, record = hwtune.quantize(net, data, bits=4, steps=16)   # for the default target, loihi2
    artifact = hwtune.export(net)                        # integer artifact (numpy + JSON, no torch)
    result = hwtune.emulate(artifact, data.test_x)       # bit-accurate emulator

Settings are the keyword arguments of the configs in hwtune.configs (the CLI's flags, without
dashes), checked the same way; every other argument is checked before any work (hwtune.api_args:
TypeError for the wrong kind of object, ValueError for a bad value, each naming the argument). A
model directory path is accepted where a net is expected (not by ``save``), an artifact directory
path where an artifact is, a dataset name where a Dataset is. Passes return ``(changed net, record)``
and leave the net they were given as it was.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hwtune import api_args as args
from hwtune import workflow
from hwtune.artifact import Artifact
from hwtune.settings import check_value, rule_of
from hwtune.configs import EXPORT_SAMPLES, MARGIN_RULE, SPLIT_SEED_RULE, DataConfig, DeployConfig, LatencyConfig, NoiseConfig, QuantizeConfig, TrainConfig
from hwtune.data import Dataset
from hwtune.data import load_dataset as _load_dataset
from hwtune.target import TargetSpec
from hwtune.target import load_target as _load_target
from hwtune.ttfs import TTFSNet


class QuantizationWarning(UserWarning):
    """A pass (quantize, latency) ended more than 1 point below where it started: the message names the
    layers whose grid costs most and the setting that would help (the record's ``warnings``)."""


def load_dataset(name: str = "digits", data_dir: str | None = None, seed: int = 0) -> Dataset:
    """Train/test tensors (pixel intensities in [0, 1]) of a dataset; ``seed`` fixes the digits split."""
    return _load_dataset(check_value(rule_of(DataConfig, "dataset"), "name", name),
                         data_dir=check_value(rule_of(DataConfig, "data_dir"), "data_dir", data_dir),
                         split_seed=check_value(SPLIT_SEED_RULE, "seed", seed))


def load_target(name_or_path: str) -> TargetSpec:
    """A shipped target by name or alias, or a target YAML file."""
    return _load_target(args.path(name_or_path, "name_or_path"))


def load(path: str | Path) -> TTFSNet:
    """A model directory (validated)."""
    from hwtune import io
    return io.load(args.path(path))


def save(net: TTFSNet, path: str | Path, force: bool = False) -> Path:
    """Write a model directory atomically; an existing model is replaced only with ``force``, and a
    directory of other files never."""
    from hwtune import io
    from hwtune.atomic import check_output
    args.model(net, paths=False)
    return io.save(net, check_output(args.path(path), io.CONFIG, args.flag(force, "force"), what="model",
                                     flag="path"))


def train(data: Dataset | str, seed: int = 0, train_samples: int | None = None, **settings) -> TTFSNet:
    """Train a TTFS net from scratch with the exact spike-time gradient (settings: TrainConfig)."""
    cfg, seed, train_samples = TrainConfig(**settings), args.seed(seed), args.train_samples(train_samples)
    args.device(settings)
    return workflow.train_model(cfg, args.dataset(data), seed, train_samples)[0]


def convert(relu: torch.nn.Module, data: Dataset | str, margin: float = 1.5) -> TTFSNet:
    """The TTFS net exactly equivalent to a trained ReLU torch module: an ``nn.Sequential`` or any module
    torch.fx traces to supported ops, residual and branching nets included (windows from ``data``)."""
    margin = check_value(MARGIN_RULE, "margin", margin)
    return workflow.convert_model(args.relu_module(relu), args.dataset(data), margin)[0]


def _pass(config, net, data, target, seed: int, train_samples, samples) -> tuple[TTFSNet, dict]:
    from hwtune.passes import PassContext, run_pass
    seed, train_samples, samples = args.seed(seed), args.train_samples(train_samples), args.samples(samples)
    args.device(config.to_dict())
    net, data = args.model(net), args.dataset(data)
    spec = workflow.resolve_target(net, target, config.pass_name, may_change=config.pass_name == "quantize")
    workflow.check_data(net, data)
    ctx = PassContext.for_net(net, data, spec, seed, train_samples, samples)
    net, record = run_pass(net, config, ctx)
    if record.get("warnings"):   # the lines the CLI prints to stderr
        warnings.warn("\n".join(record["warnings"]), QuantizationWarning, stacklevel=3)
    return net, record


def quantize(net: TTFSNet, data: Dataset | str, target: str | TargetSpec | None = None, seed: int = 0,
             train_samples: int | None = None, samples: int | None = None, **settings) -> tuple[TTFSNet, dict]:
    """Integer weights and time grid for ``target`` (default: the net's, else loihi2), fine-tuned
    (settings: QuantizeConfig). Returns (quantized copy of ``net``, pass record)."""
    return _pass(QuantizeConfig(**settings), net, data, target, seed, train_samples, samples)


def noise(net: TTFSNet, data: Dataset | str, target: str | TargetSpec | None = None, seed: int = 0,
          train_samples: int | None = None, samples: int | None = None, **settings) -> tuple[TTFSNet, dict]:
    """Evaluate and fine-tune under noise (settings: NoiseConfig). Returns (fine-tuned copy, record)."""
    return _pass(NoiseConfig(**settings), net, data, target, seed, train_samples, samples)


def latency(net: TTFSNet, data: Dataset | str, target: str | TargetSpec | None = None, seed: int = 0,
            train_samples: int | None = None, samples: int | None = None, **settings) -> tuple[TTFSNet, dict]:
    """Shorter windows, fine-tuned (settings: LatencyConfig). Returns (shortened copy, record)."""
    return _pass(LatencyConfig(**settings), net, data, target, seed, train_samples, samples)


def evaluate(net: TTFSNet, data: Dataset | str, samples: int | None = None) -> dict:
    """Accuracy, spikes per neuron and latency on the first ``samples`` test samples."""
    samples, net, data = args.samples(samples), args.model(net), args.dataset(data)
    workflow.check_data(net, data)
    return workflow.evaluate_model(net, data, samples)


def export(net: TTFSNet, target: str | TargetSpec | None = None, data: Dataset | str | None = None,
           samples: int | None = EXPORT_SAMPLES) -> Artifact:
    """The integer artifact of a quantized net for its target (another target is refused), as
    ``hwtune export`` makes it: where the target needs data (Loihi 2 sizes its neurons' guards for
    the potentials of the first ``samples`` training samples; a chip's energy estimate counts events
    on test samples), ``data`` or else the model's own dataset and split is used, logged and
    recorded in ``artifact.meta["data"]``."""
    samples = args.samples(samples)
    source = str(net) if isinstance(net, (str, os.PathLike)) else ""      # what the CLI records
    net = args.model(net)
    if isinstance(data, str):       # a name: loaded with the model's split, as --dataset NAME is
        data = DataConfig(dataset=check_value(rule_of(DataConfig, "dataset"), "data", data))
    elif data is not None:
        data = args.dataset(data)
    return workflow.export_for_target(net, target, data, samples, source)


def info(path: str | Path) -> dict:
    """What a model or artifact directory holds (``hwtune info --json``): what it is, its layers, data,
    target, passes and their records, accuracy and size."""
    from hwtune.describe import describe
    return describe(args.path(path))


def _inputs(artifact: Artifact, x) -> np.ndarray:
    return workflow.encoded_inputs(args.pixels(x, "x", artifact.input_shape), artifact.input_steps)


def emulate(artifact: Artifact, x, mode: str = "fast"):
    """Run the bit-accurate emulator on pixel intensities ``x`` (tensor or array, values in [0, 1]),
    streamed in the batches `hwtune emulate` uses (hwtune.training.eval_batch: bounded working memory);
    returns one EmulatorResult for all of ``x``."""
    from hwtune.backends.emulator import emulate_in_batches
    from hwtune.training import eval_batch
    mode = check_value(rule_of(DeployConfig, "mode"), "mode", mode)
    artifact = args.artifact(artifact)
    batch = eval_batch([layer.geometry() for layer in artifact.layers])
    return emulate_in_batches(artifact, _inputs(artifact, x), batch, mode=mode)


def run_lava(artifact: Artifact, x, hardware: bool = False):
    """Run pixel intensities ``x`` on Lava's stock Loihi 2 processes, all samples in one run: in Lava's
    bit-accurate simulator, or on a Loihi 2 board with ``hardware`` (needs Intel's lava-loihi)."""
    from hwtune.backends.lava import run_lava as run
    artifact = args.artifact(artifact)
    if not isinstance(hardware, bool):
        raise TypeError(f"hardware must be True or False, got {hardware!r}")
    return run(artifact, _inputs(artifact, x), hardware=hardware)

"""File-level operations: model directory in -> model directory out. Used by the CLI and recipes.

Each function reads what it needs (model, dataset, target), calls the model-level library
and writes its outputs atomically with provenance. No argument parsing here.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hwtune.atomic import atomic_write_text
from hwtune.data import Dataset, load_dataset, subset
from hwtune.passes import PassContext, run_pass
from hwtune.provenance import provenance
from hwtune.target import TargetSpec, load_target
from hwtune.train import TrainConfig, evaluate, predict, train
from hwtune.ttfs import TTFSNet, from_relu, preset, to_relu

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dataset_for(net: TTFSNet | None, name: str | None, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """The dataset named on the command line, else the one the model was trained on."""
    name = name or (net.info.get("dataset", {}).get("name") if net is not None else None)
    if not name:
        raise ValueError("no dataset given and the model does not record one: pass --dataset")
    return load_dataset(name, data_dir=data_dir, split_seed=seed)


def _cast(data: Dataset, dtype: torch.dtype) -> Dataset:
    return Dataset(data.train_x.to(dtype), data.train_y, data.test_x.to(dtype), data.test_y, data.meta)


def train_model(arch: str, data: Dataset, cfg: TrainConfig, network: str = "ttfs", dtype: str = "float32",
                twin: bool = False) -> tuple[TTFSNet, dict]:
    """Train a TTFS net from scratch (or a ReLU net, stored in the same format) on ``data``.

    ``twin``: also train the ReLU twin from the same initial weights on the same batches and
    report prediction agreement and the largest parameter difference (float64 for identity).
    """
    torch.manual_seed(cfg.seed)
    shape, classes = tuple(data.meta["shape"]), data.meta["n_classes"]
    net = TTFSNet(preset(arch, shape, classes), shape, dtype=_DTYPES[dtype])
    data = _cast(data, net.dtype)
    report: dict = {}
    relu = to_relu(net) if twin or network == "relu" else None
    if network == "relu":
        report["history"] = train(relu, data.train_x, data.train_y, cfg, desc="train relu")
        with torch.no_grad():
            for src, dst in zip([m for m in relu if hasattr(m, "weight")], net.synapses):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
    else:
        report["history"] = train(net, data.train_x, data.train_y, cfg, desc="train ttfs")
    if twin and network == "ttfs":
        cfg_twin = TrainConfig(**{**cfg.to_dict(), "adaptive_windows": False})
        train(relu, data.train_x, data.train_y, cfg_twin, desc="train relu twin")
        p_ttfs, p_relu = predict(net, data.test_x), predict(relu, data.test_x)
        report["twin"] = {
            "relu_accuracy": float((p_relu == data.test_y).float().mean()),
            "prediction_agreement": float((p_ttfs == p_relu).float().mean()),
            "max_param_diff": max(float((a - b).abs().max()) for a, b in zip(net.parameters(), relu.parameters())),
        }
    net.info = {"network": network, "dataset": data.meta, "history": [],
                "provenance": provenance(cfg.seed, {"arch": arch, **cfg.to_dict()})}
    if network == "ttfs":
        report["evaluation"] = evaluate(net, data.test_x, data.test_y)
    else:
        report["evaluation"] = {"accuracy": float((predict(relu, data.test_x) == data.test_y).float().mean())}
    return net, report


def convert_model(net: TTFSNet, data: Dataset, margin: float = 1.5, seed: int = 0) -> tuple[TTFSNet, dict]:
    """ReLU model (hwtune format) -> TTFS net with windows margin x layer maxima on the training set."""
    if net.info.get("network") != "relu":
        raise ValueError("convert expects a ReLU model (trained with `hwtune train --network relu`)")
    relu = to_relu(net).eval()
    data = _cast(data, net.dtype)
    ttfs = from_relu(relu, data.train_x, margin=margin)
    p_relu, p_ttfs = predict(relu, data.test_x), predict(ttfs, data.test_x)
    ttfs.info = {**net.info, "network": "ttfs"}
    record = {"pass": "convert", "margin": margin, "windows_tau": ttfs.windows.tolist(),
              "relu_accuracy": float((p_relu == data.test_y).float().mean()),
              "accuracy_after": float((p_ttfs == data.test_y).float().mean()),
              "prediction_agreement": float((p_relu == p_ttfs).float().mean()), "provenance": provenance(seed)}
    ttfs.info.setdefault("history", []).append(record)
    return ttfs, record


def pass_context(net: TTFSNet, target: str | TargetSpec, dataset: str | None = None, data_dir: str | None = None,
                 seed: int = 0, train_samples: int | None = None, eval_samples: int | None = None,
                 progress: bool = True) -> PassContext:
    spec = target if isinstance(target, TargetSpec) else load_target(target)
    data = _cast(dataset_for(net, dataset, data_dir, seed), net.dtype)
    return PassContext(data=data, target=spec, seed=seed, progress=progress, train_samples=train_samples,
                       eval_samples=eval_samples)


def apply_pass(net: TTFSNet, config, ctx: PassContext) -> dict:
    """Run one pass on ``net`` (in place) with seeded torch RNG; records the target in the model."""
    torch.manual_seed(ctx.seed)
    record = run_pass(net, config, ctx)
    net.info["target"] = ctx.target.name
    return record


def evaluate_model(net: TTFSNet, data: Dataset, samples: int | None = None, seed: int = 0) -> dict:
    data = _cast(subset(data, n_test=samples, seed=seed) if samples else data, net.dtype)
    return evaluate(net, data.test_x, data.test_y, progress=True)


def summary_line(record: dict) -> str:
    """One line 'pass: accuracy before -> after' for the CLI."""
    before, after = record.get("accuracy_before"), record.get("accuracy_after")
    extra = ""
    if "accuracy_quantized" in record:
        extra = f" (quantized, no fine-tune: {100 * record['accuracy_quantized']:.2f} %)"
    if "noisy_accuracy_before" in record:
        extra = (f"; under noise {100 * record['noisy_accuracy_before']:.2f} % -> "
                 f"{100 * record['noisy_accuracy_after']:.2f} %")
    if "latency_steps" in record:
        extra += f"; latency {record['latency_steps']} steps"
    return f"{record['pass']}: accuracy {100 * before:.2f} % -> {100 * after:.2f} %{extra}"


def write_json(path: str | Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")

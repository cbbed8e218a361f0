"""File-level operations: model directory in -> model directory out. Used by the CLI and recipes.

Each function reads what it needs (model, dataset, target), calls the model-level library
and writes its outputs atomically with provenance. No argument parsing here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hwtune import io, numerics
from hwtune.artifact import Artifact
from hwtune.atomic import atomic_write_text
from hwtune.backends.emulator import emulate
from hwtune.export import to_artifact
from hwtune.data import Dataset, load_dataset, subset
from hwtune.passes import PassContext, run_pass
from hwtune.provenance import provenance
from hwtune.target import TargetSpec, load_target
from hwtune.train import TrainConfig, evaluate, predict, train
from hwtune.ttfs import TTFSNet, from_relu, preset, to_relu


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
    net = TTFSNet(preset(arch, shape, classes), shape, dtype=io.DTYPES[dtype])
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
            "relu_accuracy": float((p_relu == data.test_y).double().mean()),
            "prediction_agreement": float((p_ttfs == p_relu).double().mean()),
            "max_param_diff": max(float((a - b).abs().max()) for a, b in zip(net.parameters(), relu.parameters())),
        }
    if network == "ttfs":
        report["evaluation"] = evaluate(net, data.test_x, data.test_y)
    else:
        report["evaluation"] = {"accuracy": float((predict(relu, data.test_x) == data.test_y).double().mean())}
    net.info = {"network": network, "dataset": data.meta, "history": [],
                "training": {"arch": arch, **{k: v for k, v in report.items() if k != "history"}},
                "provenance": provenance(cfg.seed, {"arch": arch, **cfg.to_dict()})}
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
              "relu_accuracy": float((p_relu == data.test_y).double().mean()),
              "accuracy_after": float((p_ttfs == data.test_y).double().mean()),
              "prediction_agreement": float((p_relu == p_ttfs).double().mean()), "provenance": provenance(seed)}
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


def encoded_inputs(x: torch.Tensor, input_steps: int) -> np.ndarray:
    """Integer input activations (B, n_in) of pixel tensors, by numerics.encode_input."""
    return numerics.encode_input(x.reshape(len(x), -1).numpy(), input_steps).astype(np.int64)


def load_artifact_or_model(path: str | Path, target: str | None = None) -> tuple[Artifact, TTFSNet | None]:
    """An artifact directory as is, or a model directory exported for ``target`` (default: its own)."""
    path = Path(path)
    if (path / io.CONFIG).exists():
        net = io.load(path)
        name = target or net.info.get("target")
        if not name:
            raise ValueError(f"{path}: the model records no target; pass --target")
        return to_artifact(net, load_target(name), source=str(path)), net
    return Artifact.load(path), None


def emulate_artifact(artifact: Artifact, x: torch.Tensor, y: torch.Tensor, mode: str = "fast",
                     batch_size: int = 2000, progress: bool = True, jitter_sigma: float = 0.0,
                     jitter_seed: int | None = None) -> tuple[dict, np.ndarray]:
    """Emulator accuracy, spikes/neuron, synaptic events and latency on (x, y); also predictions.

    ``jitter_sigma``: spike-time jitter in units of each window (batch b draws with seed jitter_seed + b).
    """
    preds, spikes_h, spikes_all, events = [], [], [], []
    for b, i in enumerate(tqdm(range(0, len(x), batch_size), desc=f"emulate ({mode})", disable=not progress,
                               leave=False)):
        seed = None if jitter_seed is None else jitter_seed + b
        result = emulate(artifact, encoded_inputs(x[i:i + batch_size], artifact.input_steps), mode=mode,
                         jitter_seed=seed, jitter_sigma=jitter_sigma)
        preds.append(result.predictions)
        spikes_h.append(result.spikes_per_neuron())
        spikes_all.append(result.spikes_per_neuron(include_input=True))
        events.append(result.synaptic_events())
    pred = np.concatenate(preds)
    return {"accuracy": float((pred == y.numpy()).mean()), "n": len(x), "mode": mode, "jitter_sigma": jitter_sigma,
            "spikes_per_hidden_neuron": float(np.concatenate(spikes_h).mean()),
            "spikes_per_neuron_incl_input": float(np.concatenate(spikes_all).mean()),
            "synaptic_events_per_sample": float(np.concatenate(events).mean()),
            "latency_steps": artifact.latency_steps, "window_steps": artifact.window_steps}, pred


def compare_lava(artifact: Artifact, x: torch.Tensor) -> dict:
    """Run ``x`` on Lava fixed_pt and on the emulator; count samples identical spike for spike."""
    from hwtune.backends.lava import run_lava  # Lava is imported only when used

    k0 = encoded_inputs(x, artifact.input_steps)
    lava, emu = run_lava(artifact, k0), emulate(artifact, k0, mode="stepped")
    same = np.ones(len(x), dtype=bool)
    for a, b in zip(lava.activations + lava.potentials, emu.activations + emu.potentials):
        same &= (a == b).all(axis=1)
    return {"samples": len(x), "identical_spike_for_spike": int(same.sum()),
            "lava_predictions": lava.predictions.tolist(), "emulator_predictions": emu.predictions.tolist(),
            "lava_spikes_per_sample": lava.spike_counts().tolist()}


def deploy(net: TTFSNet, target: TargetSpec, data: Dataset, out: str | Path, seed: int = 0,
           lava_samples: int = 0, emulator_samples: int | None = None, mode: str = "fast") -> dict:
    """Export ``net`` for ``target``, run the emulator on the test set and compare it with the
    torch model (prediction for prediction) and with Lava on the first ``lava_samples`` samples."""
    artifact = to_artifact(net, target)
    artifact.save(out)
    test = subset(data, n_test=emulator_samples, seed=seed) if emulator_samples else data
    x = test.test_x.to(net.dtype)
    emu, pred = emulate_artifact(artifact, x, test.test_y, mode)
    torch_pred = predict(net, x).numpy()
    report = {"artifact": str(out), "emulator": emu,
              "torch_accuracy": float((torch_pred == test.test_y.numpy()).mean()),
              "torch_emulator_agreement": float((torch_pred == pred).mean())}
    if lava_samples:
        report["lava"] = compare_lava(artifact, x[:lava_samples])
    return report


def deploy_summary(report: dict | None) -> list[str]:
    """Human-readable lines of a :func:`deploy` report."""
    if not report:
        return []
    emu = report["emulator"]
    lines = [f"emulator: accuracy {100 * emu['accuracy']:.2f} % on {emu['n']} test samples, "
             f"{emu['spikes_per_hidden_neuron']:.3f} spikes/hidden neuron, {emu['latency_steps']} steps, "
             f"{emu['synaptic_events_per_sample']:.0f} synaptic events/sample",
             f"torch quantized model: accuracy {100 * report['torch_accuracy']:.2f} %, "
             f"agrees with the emulator on {100 * report['torch_emulator_agreement']:.2f} % of predictions"]
    if "lava" in report:
        lava = report["lava"]
        lines.append(f"Lava fixed_pt == emulator spike for spike on {lava['identical_spike_for_spike']}/"
                     f"{lava['samples']} samples")
    return lines

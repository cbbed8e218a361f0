"""Model-level operations shared by the CLI, recipes, sweeps and the Python API (hwtune.api).

Each function takes loaded objects (nets, datasets, targets, settings from hwtune.configs) and
returns results; file reading and writing is the caller's business. The rules that keep a
deployment honest live here: a model stays on the target it was prepared for
(:func:`resolve_target`), and data must fit the model (:func:`check_data`).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from hwtune import numerics, progress
from hwtune.artifact import Artifact, ArtifactError
from hwtune.configs import EXPORT_SAMPLES, DataConfig, DeployConfig, TrainConfig
from hwtune.data import Dataset, DatasetError, load_dataset
from hwtune.errors import ConfigError, HwtuneError
from hwtune.exporter import to_artifact
from hwtune.provenance import provenance
from hwtune.target import TargetError, TargetSpec, load_target, model_differences, target_from_record
from hwtune.training import eval_batch, evaluate, predict, train
from hwtune.ttfs import TTFSNet, from_relu, preset, to_relu

#: The target a model is prepared for when it records none and none is asked for.
DEFAULT_TARGET = "loihi2"


# ---- data -------------------------------------------------------------------------------------

def load_data(net: TTFSNet | None, data: DataConfig, default: str | None = None, trains: bool = False,
              recorded: dict | None = None) -> Dataset:
    """The dataset named in ``data``, else the one ``net`` was trained on (else ``default``), checked
    against the model (:func:`check_data`).

    The split belongs to the model: its recorded digits split (``recorded``: an artifact's dataset
    record, where there is no net) is used unless ``data.split_seed`` asks for another, and another
    split is refused where the command fine-tunes (``trains``): that would train on the model's test
    images. A model trained on a user's .npz file finds it at its recorded path."""
    recorded = (net.info.get("dataset", {}) if net is not None else recorded) or {}
    recorded_name = recorded.get("name")
    if recorded_name == "npz":
        recorded_name = recorded.get("source")
    name = data.dataset or recorded_name or default
    if not name:
        raise HwtuneError("no dataset given and the model does not record one: pass --dataset (data= in Python)")
    if name == "custom":
        raise HwtuneError("the model was trained on a Dataset built in Python, which no name finds again: pass the "
                          "data (--dataset PATH.npz; data= in Python)")
    split = model_split_seed(net, recorded)
    if data.split_seed is not None and split is not None and data.split_seed != split and \
            (data.dataset or recorded_name) == "digits":
        if trains:
            raise HwtuneError(f"--split-seed {data.split_seed}: the model was trained on the digits split of seed "
                              f"{split}; fine-tuning on another split would train on its test images")
        progress.log(f"note: --split-seed {data.split_seed} is not the model's split ({split}): its training "
                     "images are in this test set")
    dataset = load_dataset(name, data_dir=data.data_dir,
                           split_seed=data.split_seed if data.split_seed is not None else (split or 0))
    if net is not None:
        check_data(net, dataset)
    return dataset


def model_split_seed(net: TTFSNet | None, recorded: dict | None = None) -> int | None:
    """The digits split seed a model (or an artifact's dataset record) was trained on: recorded in its
    dataset, else (hwtune <= 0.2 drew the split with the training seed) its training seed; None without one."""
    recorded = (net.info.get("dataset", {}) if net is not None else recorded) or {}
    if "split_seed" in recorded:
        return recorded["split_seed"]
    if net is not None:
        return net.info.get("provenance", {}).get("seed")
    return None


def check_split(net: TTFSNet, data: Dataset) -> None:
    """Refuse a digits split other than the one ``net`` was trained on (its test images would be
    trained on, or its training images tested)."""
    split, given = model_split_seed(net), data.meta.get("split_seed")
    if data.meta.get("name") == "digits" and split is not None and given is not None and split != given:
        raise HwtuneError(f"the model was trained on the digits split of seed {split}, not {given}: set "
                          f"dataset: {{name: digits, split_seed: {split}}}")


def check_recorded_files(recorded: dict, data: Dataset) -> None:
    """Refuse data whose files are not the ones a model or artifact records (same dataset, a file of
    the same name, another sha256): e.g. an .npz changed since the model was trained on it."""
    then, now = recorded.get("sha256"), data.meta.get("sha256")
    if not (isinstance(then, dict) and isinstance(now, dict)) or recorded.get("name") != data.meta.get("name"):
        return
    changed = [name for name in sorted(set(then) & set(now)) if then[name] != now[name]]
    if changed:
        source = data.meta.get("source", "")
        raise DatasetError(f"{source}: the data changed since the model was trained on it: {changed[0]} has sha256 "
                           f"{now[changed[0]][:16]}..., the model records {str(then[changed[0]])[:16]}... "
                           f"({len(changed)} file(s) differ); restore the data or train the model again")


def check_data(net: TTFSNet, data: Dataset) -> None:
    """Refuse data whose sample shape or class count does not fit the model, naming what it was trained
    on, or whose files changed since (:func:`check_recorded_files`)."""
    check_recorded_files(net.info.get("dataset", {}), data)
    trained_on = net.info.get("dataset", {}).get("name", "unknown data")
    shape = tuple(data.meta["shape"])
    if shape != tuple(net.input_shape):
        raise HwtuneError(f"this model was trained on {trained_on} (samples of shape {tuple(net.input_shape)}); "
                          f"{data.meta['name']} has samples of shape {shape}")
    classes = net.synapses[-1].weight.shape[0]
    if data.meta["n_classes"] != classes:
        raise HwtuneError(f"this model was trained on {trained_on} ({classes} classes); {data.meta['name']} has "
                          f"{data.meta['n_classes']}")


def check_artifact_data(artifact: Artifact, data: Dataset) -> None:
    """Refuse data whose samples or classes do not fit an artifact (its input shape, its read-out),
    or whose files changed since its model was trained on them."""
    recorded = artifact.meta.get("dataset")
    check_recorded_files(recorded if isinstance(recorded, dict) else {}, data)
    shape = tuple(data.meta["shape"])
    if math.prod(shape) != artifact.n_in:
        raise HwtuneError(f"the artifact takes inputs of shape {artifact.input_shape} ({artifact.n_in} values); "
                          f"{data.meta['name']} has samples of shape {shape}")
    if data.meta["n_classes"] != artifact.n_out:
        raise HwtuneError(f"the artifact has {artifact.n_out} outputs; {data.meta['name']} has "
                          f"{data.meta['n_classes']} classes")


def cast(data: Dataset, dtype: torch.dtype) -> Dataset:
    return Dataset(data.train_x.to(dtype), data.train_y, data.test_x.to(dtype), data.test_y, data.meta)


# ---- targets ----------------------------------------------------------------------------------

def model_target(net: TTFSNet, where: str = "the model") -> TargetSpec | None:
    """The target ``net`` is prepared for (recorded by the passes), or None."""
    record = net.info.get("target")
    return None if record is None else target_from_record(record, where)


def resolve_target(net: TTFSNet, requested: str | TargetSpec | None, verb: str, may_change: bool = False) -> TargetSpec:
    """The target a command works for: the model's own unless another is asked for.

    Asking for another target than the one the model is prepared for is refused (naming both and
    every setting that differs), except where ``may_change`` (quantize), which re-quantizes for it.
    A model with no target gets the requested one, else DEFAULT_TARGET.
    """
    recorded = model_target(net)
    if requested is None:
        return recorded or load_target(DEFAULT_TARGET)
    spec = requested if isinstance(requested, TargetSpec) else load_target(requested)
    if recorded is None or may_change or not model_differences(recorded, spec):
        return spec
    diff = "; ".join(model_differences(recorded, spec))
    raise TargetError(f"{verb}: the model is prepared for target {recorded.name!r}, not {spec.name!r} ({diff}). "
                      f"Re-quantize it for {spec.name} with `hwtune quantize MODEL --target {spec.name}`")


def check_artifact_target(artifact: Artifact, requested: str | TargetSpec) -> TargetSpec:
    """The target an artifact was exported for, refusing another one (every difference named)."""
    spec = requested if isinstance(requested, TargetSpec) else load_target(requested)
    recorded = target_from_record(artifact.meta.get("target"), "the artifact") if artifact.meta.get("target") else None
    if recorded is not None and model_differences(recorded, spec):
        raise TargetError(f"the artifact was exported for target {recorded.name!r}, not {spec.name!r} "
                          f"({'; '.join(model_differences(recorded, spec))})")
    return spec


# ---- model operations -------------------------------------------------------------------------

def train_model(cfg: TrainConfig, data: Dataset, seed: int = 0, train_samples: int | None = None,
                samples: int | None = None) -> tuple[TTFSNet, dict]:
    """Train a TTFS net from scratch (or a ReLU net, stored in the same format) on ``data`` (a seeded
    subset of ``train_samples`` training samples), evaluated on the first ``samples`` test samples.

    ``cfg.twin``: also train the ReLU twin from the same initial weights on the same batches and
    report prediction agreement and the largest parameter difference (float64 for identity).
    """
    from hwtune.data import subset
    from hwtune.io import DTYPES

    torch.manual_seed(seed)
    shape, classes = tuple(data.meta["shape"]), data.meta["n_classes"]
    net = TTFSNet(preset(cfg.arch, shape, classes), shape, dtype=DTYPES[cfg.dtype])
    data = cast(subset(data, n_train=train_samples, n_test=samples, seed=seed) if train_samples or samples else data,
                net.dtype)
    report: dict = {}
    relu = to_relu(net) if cfg.twin or cfg.network == "relu" else None
    if cfg.network == "relu":
        report["history"] = train(relu, data.train_x, data.train_y, cfg, seed, desc="train relu")
        with torch.no_grad():
            for src, dst in zip(relu.synapses, net.synapses):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
    else:
        report["history"] = train(net, data.train_x, data.train_y, cfg, seed, desc="train ttfs")
    if cfg.twin:
        train(relu, data.train_x, data.train_y, cfg.replace(adaptive_windows=False), seed, desc="train relu twin")
        p_ttfs, p_relu = predict(net, data.test_x), predict(relu, data.test_x)
        report["twin"] = {
            "relu_accuracy": float((p_relu == data.test_y).double().mean()),
            "prediction_agreement": float((p_ttfs == p_relu).double().mean()),
            "max_param_diff": max(float((a - b).detach().abs().max())
                                  for a, b in zip(net.parameters(), relu.parameters())),
        }
    if cfg.network == "ttfs":
        report["evaluation"] = evaluate(net, data.test_x, data.test_y)
    else:
        report["evaluation"] = {"accuracy": float((predict(relu, data.test_x) == data.test_y).double().mean()),
                                "n": len(data.test_y)}
    net.info = {"network": cfg.network, "dataset": data.meta, "history": [],
                "training": {**cfg.to_dict(), **{k: v for k, v in report.items() if k != "history"}},
                "provenance": provenance(seed, cfg.to_dict())}
    return net, report


def convert_model(relu: torch.nn.Module, data: Dataset, margin: float = 1.5, seed: int = 0,
                  info: dict | None = None) -> tuple[TTFSNet, dict]:
    """A ReLU torch module (anything torch.fx traces to supported ops: hwtune.ttfs.convert) -> the
    exactly equivalent TTFS net, windows margin x layer maxima on the training set; checks prediction
    agreement on the test set."""
    relu = relu.eval()
    dtype = next(relu.parameters()).dtype
    data = cast(data, dtype)
    ttfs = from_relu(relu, data.train_x, margin=margin)
    if not torch.isfinite(ttfs.windows).all():
        raise ConfigError(f"margin = {margin:g} times the layers' largest activations {ttfs.windows.tolist()} is not "
                          f"a finite {ttfs.dtype} window: choose a smaller margin")
    check_data(ttfs, data)
    p_relu, p_ttfs = predict(relu, data.test_x), predict(ttfs, data.test_x)
    ttfs.info = {**(info or {}), "network": "ttfs", "dataset": data.meta}
    record = {"pass": "convert", "margin": margin, "windows_tau": ttfs.windows.tolist(),
              "relu_accuracy": float((p_relu == data.test_y).double().mean()),
              "accuracy_after": float((p_ttfs == data.test_y).double().mean()),
              "prediction_agreement": float((p_relu == p_ttfs).double().mean()), "provenance": provenance(seed)}
    ttfs.info.setdefault("history", []).append(record)
    return ttfs, record


def relu_of(net: TTFSNet) -> torch.nn.Module:
    """The ReLU net stored in an hwtune model directory trained with ``network relu``."""
    if net.info.get("network") != "relu":
        raise HwtuneError("convert expects a ReLU model (trained with `hwtune train --network relu`) or a "
                          "torch model given as module:function")
    return to_relu(net)


def evaluate_model(net: TTFSNet, data: Dataset, samples: int | None = None) -> dict:
    """Accuracy, spikes per neuron and latency on the first ``samples`` test samples (all: None)."""
    return evaluate(net, data.test_x[:samples].to(net.dtype), data.test_y[:samples])


def needs_data(spec: TargetSpec) -> bool:
    """Whether exporting for ``spec`` reads data: a chip's energy estimate counts synaptic events on
    test samples, and the Lava build sizes its guards for training samples (:func:`export_model`)."""
    return spec.chip is not None or spec.backend == "lava"


def data_label(data: Dataset) -> str:
    """A dataset in a sentence: its name, or the path of a user's .npz file."""
    return data.meta.get("source", "npz") if data.meta.get("name") == "npz" else data.meta.get("name", "custom")


def export_for_target(net: TTFSNet, target: str | TargetSpec | None = None, data: Dataset | DataConfig | None = None,
                      samples: int | None = EXPORT_SAMPLES, source: str = "") -> Artifact:
    """What ``hwtune export`` and ``hwtune.export`` do, one path for both: the artifact of
    :func:`export_model` with the data its target needs (:func:`needs_data`): ``data`` given as a
    Dataset, else loaded as a DataConfig names it, by default the model's own data and split
    (:func:`load_data`). Which data was used is logged and recorded in ``meta["data"]``."""
    spec = resolve_target(net, target, "export")
    if not needs_data(spec):
        return export_model(net, spec, source=source, samples=samples)
    if isinstance(data, Dataset):
        check_data(net, data)
    else:
        data = load_data(net, data or DataConfig())
    artifact = export_model(net, spec, source=source, data=data, samples=samples)
    progress.log(f"export: {'; '.join(artifact.meta['data']['uses'])}")
    return artifact


def export_model(net: TTFSNet, target: str | TargetSpec | None = None, source: str = "",
                 data: Dataset | None = None, samples: int | None = EXPORT_SAMPLES) -> Artifact:
    """The integer artifact of a quantized net for the target it is prepared for (another target is
    refused by :func:`resolve_target`), with the target chip's resource map in ``meta["resources"]``
    (hwtune.mapper; a net the chip cannot hold is refused). With ``data``, the emulator counts the
    synaptic events of the first ``samples`` test samples for the energy estimate, and for the Lava
    backend sizes the stock neuron's guards for the first ``samples`` training samples; what it was
    used for is recorded in ``meta["data"]``."""
    from hwtune import mapper

    spec = resolve_target(net, target, "export")
    if model_target(net) is None:
        raise HwtuneError("export needs a model prepared for a target: run `hwtune quantize` first (in Python, "
                          "passes return the changed net: `net, record = hwtune.quantize(net, data)`)")
    artifact = to_artifact(net, spec, source=source)
    uses = []
    build = _fit_lava(artifact, data, samples) if spec.backend == "lava" else None
    if build is not None and data is not None:
        from hwtune.backends.lava.build import GUARD_KEY
        uses.append(f"the stock Loihi 2 neurons' guards sized for the potentials of {artifact.meta[GUARD_KEY]['source']}")
    if spec.chip is not None:
        events = None
        if data is not None:
            x, y = data.test_x[:samples], data.test_y[:samples]
            events = emulate_artifact(artifact, x, y)[0]["synaptic_events_per_sample"]
            uses.append(f"synaptic events for the energy estimate counted on {data_label(data)} test[:{len(x)}]")
        artifact.meta["resources"] = mapper.resource_map(artifact, spec.chip, events, len(data.test_x[:samples])
                                                         if data is not None else None, build)
    if uses:
        artifact.meta["data"] = {"dataset": data_label(data), "split_seed": data.meta.get("split_seed"), "uses": uses}
    return artifact


def _fit_lava(artifact: Artifact, data: Dataset | None, samples: int | None):
    """Size the guards of the stock Loihi 2 build for the potentials of training samples (with data),
    check that every register holds (ArtifactError naming layer, neuron and register) and return
    what the build adds for the resource map (hwtune.backends.lava.build.costs)."""
    from hwtune.backends.lava.build import calibrate, costs

    if data is not None:
        x = data.train_x[:samples]
        calibrate(artifact, encoded_inputs(x, artifact.input_steps), f"{data_label(data)} train[:{len(x)}]")
    try:
        return costs(artifact)
    except ArtifactError as e:
        if data is not None:
            raise
        raise ArtifactError(f"{e} (every guard sized for the worst case: export with the dataset to size them for "
                            "its potentials)") from None


# ---- backends ---------------------------------------------------------------------------------

def encoded_inputs(x: torch.Tensor, input_steps: int) -> np.ndarray:
    """Integer input activations (B, n_in) of pixel tensors, by numerics.encode_input."""
    return numerics.encode_input(x.reshape(len(x), -1).numpy(), input_steps).astype(np.int64)


def emulate_artifact(artifact: Artifact, x: torch.Tensor, y: torch.Tensor, mode: str = "fast",
                     batch_size: int | None = None, noise=None) -> tuple[dict, np.ndarray]:
    """Emulator accuracy, spikes/neuron, synaptic events and latency on (x, y), streaming batches;
    also the predictions. ``noise``: an EmulatorNoise (device noise; its trial draws advance batch by
    batch, in the batches of the torch evaluation, hwtune.training.eval_batch)."""
    from hwtune.backends.emulator import FastEmulator, emulate

    batch_size = batch_size or eval_batch([layer.geometry() for layer in artifact.layers])
    run = FastEmulator(artifact) if mode == "fast" else functools.partial(emulate, artifact, mode=mode)
    preds, spikes_h, spikes_all, events = [], [], [], []
    for i in progress.bar(range(0, len(x), batch_size), desc=f"emulate ({mode})"):
        result = run(encoded_inputs(x[i:i + batch_size], artifact.input_steps), noise=noise)
        preds.append(result.predictions)
        spikes_h.append(result.spikes_per_neuron())
        spikes_all.append(result.spikes_per_neuron(include_input=True))
        events.append(result.synaptic_events())
    pred = np.concatenate(preds)
    return {"accuracy": float((pred == y.numpy()).mean()), "n": len(x), "mode": mode,
            "spikes_per_hidden_neuron": float(np.concatenate(spikes_h).mean()),
            "spikes_per_neuron_incl_input": float(np.concatenate(spikes_all).mean()),
            "synaptic_events_per_sample": float(np.concatenate(events).mean()),
            "latency_steps": artifact.latency_steps, "window_steps": artifact.window_steps}, pred


def emulate_under_noise(artifact: Artifact, x: torch.Tensor, y: torch.Tensor, spec, devices: int,
                        seed: int) -> dict:
    """Emulator accuracy under device noise ``spec`` on ``devices`` held-out devices (the draws of
    hwtune.passes.noise.evaluate_under_noise): mean, standard deviation, each device's."""
    import statistics

    from hwtune.backends.emulator import EmulatorNoise

    accuracies = [emulate_artifact(artifact, x, y, noise=EmulatorNoise.evaluation(artifact, spec, seed, i))[0]["accuracy"]
                  for i in range(devices)]
    return {"accuracy": statistics.fmean(accuracies), "accuracy_std": statistics.pstdev(accuracies),
            "accuracies": accuracies, "devices": devices, "noise": spec.to_dict()}


def compare_with_torch(net: TTFSNet, x: torch.Tensor, y: torch.Tensor, emulator_pred: np.ndarray) -> dict:
    """Accuracy of the quantized torch model and its prediction agreement with the emulator."""
    torch_pred = predict(net, x.to(net.dtype)).numpy()
    return {"torch_accuracy": float((torch_pred == y.numpy()).mean()),
            "torch_emulator_agreement": float((torch_pred == emulator_pred).mean())}


def artifact_backend(artifact: Artifact) -> str:
    """The backend of the target an artifact was exported for (the emulator when none is recorded)."""
    record = artifact.meta.get("target")
    return target_from_record(record, "the artifact").backend if record else "emulator"


def artifact_target_noise(artifact: Artifact):
    """The noise of the target an artifact was exported for (a NoiseSpec), or None."""
    record = artifact.meta.get("target")
    noise = target_from_record(record, "the artifact").noise if record else None
    return noise if noise is not None and noise.any else None


def compare_backend(artifact: Artifact, x: torch.Tensor, backend: str | None = None, **options) -> dict:
    """Run ``x`` on ``backend`` (default: the artifact's target's, hwtune.backends) and on the
    emulator's stepped mode; count samples identical spike for spike (every activation, and the
    logits), plus what the backend reports of its own (RunResult.backend_report; Lava: the
    ProcessModels that ran and the most spikes of one neuron). ``options`` go to the backend's
    runner (Lava: hardware)."""
    from hwtune.backends import get_backend
    from hwtune.backends.emulator import emulate

    name = backend or artifact_backend(artifact)
    k0 = encoded_inputs(x, artifact.input_steps)
    hw, emu = get_backend(name)(artifact, k0, **options), emulate(artifact, k0, mode="stepped")
    same = (hw.logits == emu.logits).all(axis=1)
    for a, b in zip(hw.activations, emu.activations):
        same &= (a == b).all(axis=1)
    report = {"backend": name, "samples": len(x), "identical_spike_for_spike": int(same.sum()),
              "backend_predictions": hw.predictions.tolist(), "emulator_predictions": emu.predictions.tolist(),
              "spikes_per_sample": hw.spike_counts().tolist()}
    report.update(hw.backend_report())
    return report


def deploy(net: TTFSNet, artifact: Artifact, data: Dataset, cfg: DeployConfig) -> dict:
    """Run the emulator on the test set and compare it with the quantized torch model (prediction
    for prediction) and with the target's backend (Lava for loihi2) on the first
    ``cfg.backend_samples`` samples, spike for spike."""
    x, y = data.test_x[:cfg.samples].to(net.dtype), data.test_y[:cfg.samples]
    emu, pred = emulate_artifact(artifact, x, y, cfg.mode)
    report = {"emulator": emu, **compare_with_torch(net, x, y, pred)}
    if cfg.backend_samples:
        report["backend"] = compare_backend(artifact, x[:cfg.backend_samples])
    return report


def deploy_failures(report: dict) -> list[str]:
    """What went wrong in a :func:`deploy` report: the emulator disagreeing with torch, the backend with
    the emulator (empty when every check holds)."""
    failures = []
    if report["torch_emulator_agreement"] != 1.0:
        failures.append(f"the emulator disagrees with the quantized torch model on "
                        f"{100 * (1 - report['torch_emulator_agreement']):.2f} % of the test samples")
    hw = report.get("backend")
    if hw and hw["identical_spike_for_spike"] != hw["samples"]:
        failures.append(f"the {hw['backend']} backend differs from the emulator on "
                        f"{hw['samples'] - hw['identical_spike_for_spike']} of {hw['samples']} samples")
    return failures

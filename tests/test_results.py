"""The committed CI results hold on any machine: exact where integers decide, within a measured
tolerance where float training decides, and exactly equal when rerun on the same machine.

- docs/results/robustness-ci/models/<id>/ (scripts/make_ci_models.py): the quantized models of the
  CI sweep's noiseless fine-tuned points, their Loihi 2 artifacts and integer outputs. Their
  torch forward, export, emulator and Lava run are integer arithmetic: bit for bit anywhere.
- docs/results/robustness-ci/points.jsonl (`hwtune sweep recipes/robustness-ci.yaml`): float
  training (base model, fine-tuning) rounds differently with the CPU's vector kernels, so the
  session's rerun (conftest.ci_sweep) must match within the tolerance of spread.json, which
  scripts/measure_spread.py derives from the spread measured across kernels and threads; the
  metrics integers decide (latency, torch == emulator agreement, Lava == emulator) exactly.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwtune import io, workflow
from hwtune.artifact import Artifact
from hwtune.backends.emulator import emulate
from hwtune.cli import main
from hwtune.data import load_dataset
from hwtune.provenance import provenance
from hwtune.sweep import read_points
from hwtune.training import predict

COMMITTED = Path("docs/results/robustness-ci")
SPREAD = json.loads((COMMITTED / "spread.json").read_text())
MODELS = sorted((COMMITTED / "models").iterdir())


def test_two_committed_models_cover_both_bit_widths():
    points = [json.loads((m / "outputs.json").read_text())["point"] for m in MODELS]
    assert sorted(p["bits"] for p in points) == [4, 8] and all(p["finetune"] and not p["jitter"] for p in points)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_committed_models_give_the_committed_integers_bit_for_bit(model):
    expected = json.loads((model / "outputs.json").read_text())
    data = load_dataset("digits")
    net = io.load(model / "model")
    committed = Artifact.load(model / "artifact")
    artifact = workflow.export_model(net)
    for name, array in committed.arrays().items():
        assert np.array_equal(artifact.arrays()[name], array), name           # export: the same integers
    assert predict(net, data.test_x.to(net.dtype)).tolist() == expected["torch_predictions"]
    emu = emulate(committed, workflow.encoded_inputs(data.test_x, committed.input_steps))
    assert emu.predictions.tolist() == expected["emulator_predictions"] == expected["torch_predictions"]
    assert emu.logits.tolist() == expected["emulator_logits"]
    assert emu.spike_counts().tolist() == expected["emulator_spikes_per_sample"]
    n = expected["lava_samples"]
    lava = workflow.compare_backend(committed, data.test_x[:n], "lava")
    assert lava["identical_spike_for_spike"] == n == expected["lava_identical_spike_for_spike"]
    assert lava["backend_predictions"] == expected["lava_predictions"]
    assert lava["spikes_per_sample"] == expected["lava_spikes_per_sample"]
    # the committed sweep point is this model
    point = {r["id"]: r for r in read_points(COMMITTED)}[model.name]
    assert point["accuracy_torch"] == float(np.mean(np.array(expected["torch_predictions"]) == data.test_y.numpy()))


def test_tolerance_is_derived_from_the_measured_spread():
    """MARGIN x the largest difference measured across kernels and threads (whole test images for accuracy)."""
    margin = SPREAD["margin"]
    assert margin >= 2 and len(SPREAD["runs"]) >= 6
    for family, measured in SPREAD["spread"].items():
        tol = margin * measured["value"]
        if family == "accuracy":
            tol = max(1, int(np.ceil(tol * 360))) / 360
        assert SPREAD["tolerance"][family] == pytest.approx(tol)


def within(family: str, a: float, b: float) -> bool:
    diff = abs(a - b) / max(abs(a), abs(b), 1e-12) if family in SPREAD["relative"] else abs(a - b)
    return diff <= SPREAD["tolerance"][family] + 1e-12


def test_ci_sweep_reproduces_the_committed_numbers_within_the_measured_spread(ci_sweep):
    code, out = ci_sweep
    assert code == 0
    committed = {r["id"]: r for r in read_points(COMMITTED)}
    rerun = {r["id"]: r for r in read_points(out)}
    assert len(committed) == 8 and set(rerun) == set(committed)       # same points, keyed by every setting
    for pid, record in committed.items():
        for key in SPREAD["exact"]:
            assert rerun[pid].get(key) == record.get(key), (pid, key)
        for family, metrics in {"accuracy": ("accuracy_torch", "accuracy_emulator", "accuracy_float"),
                                "spikes_per_hidden_neuron": ("spikes_per_hidden_neuron",),
                                "synaptic_events_per_sample": ("synaptic_events_per_sample",)}.items():
            for key in metrics:
                assert within(family, rerun[pid][key], record[key]), (pid, key, rerun[pid][key], record[key])
    # what the numbers depend on besides kernels: the versions recorded with them are these (constraints.txt)
    recorded = json.loads((COMMITTED / "sweep.json").read_text())["provenance"]["versions"]
    now = provenance(0)["versions"]
    assert {k: now[k] for k in ("torch", "brevitas", "numpy", "lava-nc")} == \
        {k: recorded[k] for k in ("torch", "brevitas", "numpy", "lava-nc")}, "install with pip -c constraints.txt"


def test_same_machine_rerun_is_exact(ci_sweep, tmp_path):
    """Two points of the CI recipe rerun from scratch (base model retrained) equal the session's sweep exactly."""
    recipe = yaml.safe_load(open("recipes/robustness-ci.yaml"))
    recipe.pop("grid")
    recipe.pop("floors")
    recipe["points"] = [{"bits": 4, "steps": 16, "jitter": 0.0, "finetune": True},
                        {"bits": 8, "steps": 16, "jitter": 0.1, "finetune": False}]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["sweep", str(path), "--out", str(tmp_path / "again"), "-q"]) == 0
    first = {r["id"]: r for r in read_points(ci_sweep[1])}
    again = read_points(tmp_path / "again")
    assert len(again) == 2 and all(r == first[r["id"]] for r in again)

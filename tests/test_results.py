"""The committed results regenerate: the CI sweep rerun here gives the numbers in docs/results.

docs/results/robustness-ci/points.jsonl was written by `hwtune sweep recipes/robustness-ci.yaml`
(seed 0, 1 torch thread per point, the versions in its sweep.json); the session's CI sweep
(conftest.ci_sweep) reruns that recipe, and every point must come out with the same id and the
same accuracies, spike counts and agreement.
"""
import json
from pathlib import Path

import pytest

from hwtune.provenance import provenance
from hwtune.sweep import read_points

COMMITTED = Path("docs/results/robustness-ci")
COMPARED = ("accuracy_torch", "accuracy_emulator", "accuracy_float", "spikes_per_hidden_neuron",
            "torch_emulator_agreement", "synaptic_events_per_sample", "latency_steps", "backend_identical")


def test_ci_sweep_reproduces_the_committed_numbers(ci_sweep):
    code, out = ci_sweep
    assert code == 0
    committed = {r["id"]: r for r in read_points(COMMITTED)}
    rerun = {r["id"]: r for r in read_points(out)}
    assert len(committed) == 8 and set(rerun) == set(committed)       # same points, keyed by every setting
    for pid, record in committed.items():
        for key in COMPARED:
            assert rerun[pid].get(key) == pytest.approx(record.get(key), abs=1e-12), (pid, key)
    # what the numbers depend on besides seed and threads: the versions recorded with them are these
    recorded = json.loads((COMMITTED / "sweep.json").read_text())["provenance"]["versions"]
    now = provenance(0)["versions"]
    assert {k: now[k] for k in ("torch", "brevitas", "numpy", "lava-nc")} == \
        {k: recorded[k] for k in ("torch", "brevitas", "numpy", "lava-nc")}

"""Measure how much the float-trained CI sweep moves with the CPU's kernels and torch's threads,
and derive the tolerance tests/test_results.py allows: docs/results/robustness-ci/spread.json.

    python scripts/measure_spread.py            # 3 kernel sets x 2 thread counts, ~2 minutes on 2 cores

Runs ``hwtune sweep recipes/robustness-ci.yaml`` once per (kernel set, threads): ATen's
``ATEN_CPU_CAPABILITY`` with the matching oneDNN and MKL instruction-set caps (``default`` =
SSE4, ``avx2``, ``avx512``; a set the CPU lacks falls back to what it has), and 1 or 2 threads
(``OMP_NUM_THREADS`` and ``--threads``). The committed points (made on another CPU, named in their
sweep.json) join the comparison. Per metric family it records the largest difference between any
two runs at any point, and sets the tolerance to MARGIN times it (at least one test image for the
accuracies). Metrics decided by integers alone (latency in steps, torch == emulator agreement,
Lava == emulator samples) must not move at all; the script fails if they do.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "recipes/robustness-ci.yaml"
COMMITTED = ROOT / "docs/results/robustness-ci"
KERNELS = {   # ATen capability -> the oneDNN and MKL caps of the same instruction set
    "default": {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "DNNL_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}
THREADS = (1, 2)
#: Metric families: absolute differences (accuracies, as fractions of the test set) or relative ones.
FAMILIES = {"accuracy": ("accuracy_torch", "accuracy_emulator", "accuracy_float"),
            "spikes_per_hidden_neuron": ("spikes_per_hidden_neuron",),
            "synaptic_events_per_sample": ("synaptic_events_per_sample",)}
RELATIVE = ("spikes_per_hidden_neuron", "synaptic_events_per_sample")
EXACT = ("latency_steps", "torch_emulator_agreement", "backend_identical", "backend_samples")
MARGIN = 2.0
TEST_IMAGES = 360   # the digits test split


def run_sweep(kernel: str, threads: int, out: Path) -> dict:
    env = {**os.environ, **KERNELS[kernel], "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "hwtune.cli", "sweep", RECIPE, "--out", str(out), "--threads", str(threads),
                    "-q"], cwd=ROOT, env=env, check=True)
    return points(out)


def points(directory: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, (directory / "points.jsonl").read_text().splitlines())}


def difference(family: str, a: float, b: float) -> float:
    if family in RELATIVE:
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return abs(a - b)


def spread(runs: dict[str, dict]) -> tuple[dict, list[str]]:
    """Per family, the largest difference between two runs (and where); integer metrics that moved."""
    largest, moved = {}, []
    for (name_a, a), (name_b, b) in itertools.combinations(runs.items(), 2):
        if set(a) != set(b):
            raise SystemExit(f"{name_a} and {name_b} have different points (ids): a changed recipe?")
        for pid in a:
            for family, metrics in FAMILIES.items():
                for m in metrics:
                    d = difference(family, a[pid][m], b[pid][m])
                    if d > largest.get(family, {"value": -1})["value"]:
                        largest[family] = {"value": d, "point": pid, "metric": m, "runs": [name_a, name_b]}
            moved += [f"{pid} {m}: {name_a} {a[pid].get(m)} vs {name_b} {b[pid].get(m)}" for m in EXACT
                      if a[pid].get(m) != b[pid].get(m)]
    return largest, moved


def tolerance(family: str, value: float) -> float:
    tol = MARGIN * value
    if family == "accuracy":   # whole test images, at least one
        tol = max(1, math.ceil(tol * TEST_IMAGES)) / TEST_IMAGES
    return tol


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(COMMITTED / "spread.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {f"{k}/{t} thread{'s' if t > 1 else ''}": run_sweep(k, t, Path(tmp) / f"{k}-{t}")
                for k in KERNELS for t in THREADS}
    committed_on = json.loads((COMMITTED / "sweep.json").read_text())["provenance"]["machine"]
    runs[f"committed ({committed_on.get('cpu')}, {committed_on.get('cpu_capability')})"] = points(COMMITTED)
    largest, moved = spread(runs)
    if moved:
        print("integer-decided metrics moved:\n  " + "\n  ".join(moved), file=sys.stderr)
        return 1
    from hwtune.provenance import machine, versions
    record = {"command": "python scripts/measure_spread.py", "recipe": RECIPE, "machine": machine(),
              "platform": platform.processor() or platform.machine(), "versions": versions(),
              "kernels": KERNELS, "threads": list(THREADS), "margin": MARGIN, "relative": list(RELATIVE),
              "exact": list(EXACT), "spread": largest,
              "tolerance": {family: tolerance(family, v["value"]) for family, v in largest.items()},
              "runs": {name: {pid: {m: r.get(m) for ms in FAMILIES.values() for m in ms} for pid, r in pts.items()}
                       for name, pts in runs.items()}}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    for family, v in largest.items():
        print(f"{family}: largest difference {v['value']:.6g} ({v['metric']} of {v['point']}, {' vs '.join(v['runs'])}); "
              f"tolerance {record['tolerance'][family]:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

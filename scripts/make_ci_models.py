"""Commit the CI sweep's integer ground truth: the quantized models of its noiseless fine-tuned
points, their Loihi 2 artifacts and their integer outputs (docs/results/robustness-ci/models/).

    hwtune sweep recipes/robustness-ci.yaml --seed 0 --out runs/robustness-ci
    python scripts/make_ci_models.py runs/robustness-ci

Rebuilds each point's model from the sweep's cached base model exactly as the sweep did
(hwtune.sweep.point_model, 1 torch thread), checks that it gives the sweep's recorded numbers, and
writes ``models/<id>/model`` (hwtune model directory), ``models/<id>/artifact`` and
``models/<id>/outputs.json``: on the 360 digits test images, the quantized torch model's and the
emulator's predictions, the emulator's output potentials (logits) and spike counts per sample,
and Lava's predictions and spike counts on the first samples. These are integers: tests/test_results.py
requires them bit for bit on any machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from hwtune import io, workflow
from hwtune.executors import torch_threads
from hwtune.passes import PassContext
from hwtune.study import load_sweep
from hwtune.sweep import base_dir, point_id, point_model, read_points

RECIPE = "recipes/robustness-ci.yaml"
DEST = Path("docs/results/robustness-ci/models")
LAVA_SAMPLES = 10


def integer_outputs(net, artifact, data, lava_samples: int) -> dict:
    """The integer outputs the committed models must reproduce anywhere (module docstring)."""
    from hwtune.backends.emulator import emulate
    from hwtune.training import predict

    x = data.test_x.to(net.dtype)
    emu = emulate(artifact, workflow.encoded_inputs(data.test_x, artifact.input_steps))
    lava = workflow.compare_backend(artifact, data.test_x[:lava_samples], "lava")
    return {"samples": len(x), "torch_predictions": predict(net, x).tolist(),
            "emulator_predictions": emu.predictions.tolist(), "emulator_logits": emu.logits.tolist(),
            "emulator_spikes_per_sample": emu.spike_counts().tolist(),
            "lava_samples": lava_samples, "lava_identical_spike_for_spike": lava["identical_spike_for_spike"],
            "lava_predictions": lava["backend_predictions"], "lava_spikes_per_sample": lava["spikes_per_sample"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="output of `hwtune sweep recipes/robustness-ci.yaml` (holds its base model)")
    args = parser.parse_args()
    sweep = load_sweep(RECIPE)
    sweep.out = Path(args.sweep_dir)
    records = {r["id"]: r for r in read_points(sweep.out)}
    data = workflow.load_data(None, sweep.data, default="digits")
    with torch_threads(1):
        base = io.load(base_dir(sweep))
        ctx = PassContext(data=workflow.cast(data, base.dtype), target=sweep.target, seed=sweep.seed)
        if DEST.exists():
            shutil.rmtree(DEST)
        for point in sweep.points:
            if not point["finetune"] or point["jitter"] or point["weight_mismatch"]:
                continue
            pid = point_id(sweep, point)
            net = point_model(sweep, base, point, ctx)
            artifact = workflow.export_model(net, sweep.target)
            outputs = integer_outputs(net, artifact, data, LAVA_SAMPLES)
            accuracy = float(np.mean(np.array(outputs["torch_predictions"]) == data.test_y.numpy()))
            if accuracy != records[pid]["accuracy_torch"]:
                print(f"{pid}: rebuilt model gives {accuracy}, the sweep recorded {records[pid]['accuracy_torch']}",
                      file=sys.stderr)
                return 1
            io.save(net, DEST / pid / "model")
            artifact.save(DEST / pid / "artifact")
            (DEST / pid / "outputs.json").write_text(json.dumps({"point": point, **outputs}) + "\n")
            print(f"wrote {DEST / pid}: {point}, torch accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory (RSS) of every verb on a model, each run in its own process (os.wait4's ru_maxrss).

By default the verbs run on the VGG Fashion-MNIST net (``--model``) with the full training and test
sets: train (1 epoch), quantize (window quantiles over the training samples, evaluation of the test
samples, a little fine-tuning), latency, noise, export (emulator events on 1000 samples) and emulate
(the test samples), so that every pass over the data is exercised. Every pass streams batches, so
the peak does not grow with how much data it reads: ``--train-samples`` / ``--samples`` /
``--train-epochs`` shorten the run (the full datasets are still loaded). Goal: every verb under
4 GB. Output: a table and ``bench/memory.json`` (peak RSS in MB, wall time, the commands).

    python scripts/bench_memory.py --model runs/fmnist-vgg --arch vgg
    python scripts/bench_memory.py --model runs/fmnist-vgg --arch vgg --train-epochs 0.2 --train-samples 12000 \
        --samples 2000          # what bench/memory.json holds (about 10 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwtune.atomic import write_json
from hwtune.provenance import provenance

GOAL_MB = 4096


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command run to completion."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, elapsed


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="runs/fmnist-vgg", help="float TTFS model directory")
    p.add_argument("--arch", default="vgg", help="architecture trained by the train verb")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--train-epochs", default="1", help="epochs of the train verb (the data streams in batches: "
                   "the peak does not grow with the epochs)")
    p.add_argument("--finetune-epochs", default="0.05", help="fine-tuning epochs of the passes")
    p.add_argument("--train-samples", help="passes: calibrate and fine-tune on this many training samples (default: "
                   "all; every pass streams batches, so the peak does not grow with the data it reads)")
    p.add_argument("--samples", help="passes, export and emulate: this many test samples (default: all)")
    p.add_argument("--out", default="bench/memory.json")
    args = p.parse_args(argv)
    hwtune = [sys.executable, "-m", "hwtune.cli"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="hwtune-bench-memory-") as tmp:
        t = Path(tmp)
        data = [f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in ("train_samples", "samples")
                if getattr(args, flag)]
        ft = ["--epochs", args.finetune_epochs, "-q", *data]
        verbs = {
            "train": ["train", "--arch", args.arch, "--dataset", args.dataset, "--epochs", args.train_epochs,
                      "--batch-size", "64",
                      "-o", str(t / "trained"), "-q"],
            "quantize": ["quantize", args.model, "--bits", "4", "--steps", "16", "-o", str(t / "w4"), *ft],
            "latency": ["latency", str(t / "w4"), "--steps", "12", "-o", str(t / "t12"), *ft],
            "noise": ["noise", str(t / "w4"), "--jitter", "0.1", "-o", str(t / "noise"), *ft],
            "export": ["export", str(t / "w4"), "-o", str(t / "w4.loihi2"), "-q"] +
                      ([f"--samples={args.samples}"] if args.samples else []),
            "emulate": ["emulate", str(t / "w4"), "-q"] + ([f"--samples={args.samples}"] if args.samples else []),
        }
        for verb, cmd in verbs.items():
            mb, seconds = peak_rss(hwtune + cmd)
            results[verb] = {"peak_rss_mb": round(mb, 1), "wall_s": round(seconds, 1),
                             "command": "hwtune " + " ".join(cmd).replace(tmp, "TMP")}
            print(f"{verb:9s} {mb:8.0f} MB {seconds:7.0f} s   {results[verb]['command']}", flush=True)
    worst = max(r["peak_rss_mb"] for r in results.values())
    print(f"largest peak RSS: {worst:.0f} MB (goal <= {GOAL_MB} MB)")
    out = {"verbs": results, "largest_peak_rss_mb": worst, "goal_mb": GOAL_MB,
           "threads": os.environ.get("OMP_NUM_THREADS"), "provenance": provenance(None, vars(args))}
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()

"""Emulator speed: fast and stepped modes vs Lava (the stock Loihi 2 build) vs float32 torch inference, one run.

The emulator's fast mode and the torch float32 forward of the same net (same layer kinds: conv,
average pooling, flatten, linear, ReLU; a random 784-340-10 by default) are timed interleaved on
the same inputs, in the same batches, so machine load hits both alike; the ratio of medians and
that of the fastest runs are reported. Inputs: the test images of the artifact's dataset when it
records one, else random pixels. Lava runs its best case: many samples back to back in one long
run (start-up and read-back included). Every backend's outputs are compared with the fast mode's.
Output: a table on stdout and a JSON file (versions, seed, sizes, thread counts, every timing).

    python scripts/bench_emulator.py --seed 0 --samples 10000                       # bench/emulator.json
    python scripts/bench_emulator.py --artifact runs/fmnist-vgg-w4.loihi2 --lava-samples 10 \
        --samples 2000 --out bench/emulator-vgg.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from hwtune import numerics
from hwtune.artifact import Artifact
from hwtune.data import load_dataset
from hwtune.layers import Conv2d, Flatten
from hwtune.atomic import atomic_write_text
from hwtune.backends.emulator import emulate
from hwtune.provenance import provenance
from hwtune.random_artifacts import random_artifact

GOAL_EMULATOR_OVER_TORCH = 3.0     # emulator time over torch float32 time, at most


def float_net(artifact: Artifact) -> torch.nn.Sequential:
    """The float32 torch net of the same layers (pooling as average pooling, ReLU per hidden layer)."""
    modules = []
    for layer in artifact.layers:
        for op in layer.ops:
            modules.append(torch.nn.Flatten() if isinstance(op, Flatten) else torch.nn.AvgPool2d(op.kernel))
        syn, weight = layer.synapse, torch.from_numpy(layer.weight.astype(np.float32))
        if isinstance(syn, Conv2d):
            module = torch.nn.Conv2d(syn.in_shape[0], syn.out_channels, syn.kernel, stride=syn.stride,
                                     padding=syn.padding)
        else:
            module = torch.nn.Linear(layer.weight.shape[1], syn.out_channels)
        with torch.no_grad():
            module.weight.copy_(weight)
            module.bias.copy_(torch.from_numpy(layer.bias.astype(np.float32)))
        modules += [module] if layer.readout else [module, torch.nn.ReLU()]
    return torch.nn.Sequential(*modules).eval()


def batched(fn, x, batch: int):
    return [fn(x[i:i + batch]) for i in range(0, len(x), batch)]


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def same(a, b) -> bool:
    """Every spike step and every logit equal (Lava observes no hidden potential)."""
    return all(np.array_equal(x, y) for x, y in zip(a.spike_steps, b.spike_steps)) and \
        np.array_equal(a.logits, b.logits)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--artifact", help="artifact directory (default: a random 784-340-10 net)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=10000, help="samples for the fast mode and torch")
    p.add_argument("--stepped-samples", type=int, default=1000)
    p.add_argument("--lava-samples", type=int, default=50, help="samples in the one Lava run (0: skip Lava)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--bits", type=int, default=8, help="weight bits of the random net")
    p.add_argument("--steps", type=int, default=16, help="steps per window of the random net")
    p.add_argument("--slope", default="per-layer", choices=["per-layer", "per-neuron"],
                   help="slopes of the random net: one per layer (per-layer weight scale, the targets' "
                        "default) or one per neuron (per-channel scale)")
    p.add_argument("--goal-over-lava", type=float, default=1000,
                   help="goal: emulator samples/s over Lava samples/s, at least (issue 4 set 5000 for FC2, issue 10 "
                        "1000 for the VGG)")
    p.add_argument("--batch", type=int, default=1000, help="samples per batch (emulator and torch alike)")
    p.add_argument("--out", default="bench/emulator.json")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    artifact = (Artifact.load(args.artifact) if args.artifact
                else random_artifact(rng, [784, 340, 10], bits=args.bits, steps=args.steps, slope=args.slope))
    dataset = artifact.meta.get("dataset", {}).get("name") if isinstance(artifact.meta.get("dataset"), dict) else None
    if dataset:
        u = load_dataset(dataset).test_x[:args.samples].reshape(-1, *artifact.input_shape).numpy()
    else:   # pixel intensities with 60 % background, as in (Fashion-)MNIST
        u = rng.random((args.samples, *artifact.input_shape)) * (rng.random((args.samples, *artifact.input_shape)) < 0.4)
    args.samples = len(u)
    k0 = numerics.encode_input(u, artifact.input_steps).astype(np.int64).reshape(len(u), -1)
    x = torch.from_numpy(u.astype(np.float32))
    net = float_net(artifact)

    times = {"fast": [], "torch": []}
    with torch.no_grad():
        emulate(artifact, k0[:100]), net(x[:100])                   # warm-up
        for _ in range(args.repeats):
            t, _ = timed(lambda: batched(lambda k: emulate(artifact, k), k0, args.batch))
            times["fast"].append(t)
            t, _ = timed(lambda: batched(net, x, args.batch))
            times["torch"].append(t)
    n_step = min(args.stepped_samples, args.samples)
    times["stepped"], stepped = timed(lambda: emulate(artifact, k0[:n_step], mode="stepped"))
    checks = {"stepped_equals_fast": same(stepped, emulate(artifact, k0[:n_step]))}
    rates = {"fast": args.samples / statistics.median(times["fast"]),
             "torch": args.samples / statistics.median(times["torch"]),
             "stepped": n_step / times["stepped"]}
    lava_info = {}
    if args.lava_samples:
        from hwtune.backends.lava import run_lava
        n_lava = min(args.lava_samples, args.samples)
        times["lava"], lava = timed(lambda: run_lava(artifact, k0[:n_lava]))
        rates["lava"] = n_lava / times["lava"]
        checks["lava_equals_fast"] = same(lava, emulate(artifact, k0[:n_lava]))
        lava_info = {"samples": n_lava, "steps": lava.total_steps, "period": lava.period,
                     "ms_per_step": 1000 * times["lava"] / lava.total_steps}

    ratios = {"emulator_over_torch_time": rates["torch"] / rates["fast"],
              "emulator_over_torch_time_best": min(times["fast"]) / min(times["torch"])}
    if "lava" in rates:
        ratios["emulator_over_lava_speed"] = rates["fast"] / rates["lava"]
    print(f"net {'-'.join(str(n) for n in [artifact.n_in] + [l.n_out for l in artifact.layers])}, "
          f"windows {artifact.window_steps}, latency {artifact.latency_steps} steps, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'backend':16s} {'samples/s':>12s}")
    for name, label in (("fast", "emulator fast"), ("stepped", "emulator stepped"), ("lava", "lava (stock build)"),
                        ("torch", "torch float32")):
        if name in rates:
            print(f"{label:16s} {rates[name]:12.1f}")
    print(f"emulator / torch time: {ratios['emulator_over_torch_time']:.2f} (medians), "
          f"{ratios['emulator_over_torch_time_best']:.2f} (fastest runs)  (goal <= {GOAL_EMULATOR_OVER_TORCH})")
    if "emulator_over_lava_speed" in ratios:
        print(f"emulator / Lava speed: {ratios['emulator_over_lava_speed']:.0f}  (goal >= {args.goal_over_lava})")
    print("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    result = {"samples_per_s": rates, "ratios": ratios, "checks": checks, "times_s": times, "lava": lava_info,
              "goals": {"emulator_over_lava_speed": args.goal_over_lava,
                        "emulator_over_torch_time": GOAL_EMULATOR_OVER_TORCH},
              "net": {"sizes": [artifact.n_in] + [l.n_out for l in artifact.layers],
                      "layers": [f"{type(l.synapse).__name__}{'+' + '+'.join(type(o).__name__ for o in l.ops) if l.ops else ''}"
                                 for l in artifact.layers],
                      "window_steps": artifact.window_steps, "weight_bits": artifact.weight_bits,
                      "artifact": args.artifact or f"random, {args.slope} slopes"},
              "threads": {"torch": torch.get_num_threads(), "numpy_blas": _blas_threads()},
              "inputs": f"{dataset} test images" if dataset else "random pixels",
              "provenance": provenance(args.seed, vars(args))}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


def _blas_threads():
    """Threads numpy's BLAS uses (threadpoolctl, a scikit-learn dependency), or None."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [info.get("num_threads") for info in threadpool_info() if info.get("user_api") == "blas"]


if __name__ == "__main__":
    main()

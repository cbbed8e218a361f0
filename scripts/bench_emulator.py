"""Emulator speed: fast and stepped modes vs Lava (the stock Loihi 2 build) vs float32 torch inference, one run.

The emulator's fast mode and the torch float32 forward of the same net (the artifact's graph walked
with the same layer kinds: conv, average pooling, global pooling, flatten, concat, add, linear, ReLU;
a random 4-bit 784-340-10 by default, which the stock Loihi 2 build accepts) are timed interleaved
on the same inputs, in the same batches, on the same number of threads (``--threads``, 1 by
default: torch's and numpy's BLAS alike), so machine load hits both alike; the ratio of medians,
that of the fastest runs and that of the CPU times are reported. The fast mode is prepared once per
timed run (hwtune.backends.emulator.FastEmulator, as streaming callers do; its preparation is in
the time) and runs on the engine it picks by itself (hwtune.layers.engine: oneDNN's int8 kernels
through torch where they are exact) and, timed alongside, on each slower exact engine
(torch's float kernels; numpy's BLAS, what a torch-free install runs). Inputs: the test images of
the artifact's dataset when it records one, else random pixels. Lava runs its best case: many
samples back to back in one long run (start-up and read-back included). Every backend's outputs
are compared with the fast mode's. Output: a table on stdout and a JSON file (versions, seed,
sizes, threads, the CPU and the kernels each side ran: numpy's BLAS as threadpoolctl reports it,
torch's BLAS, oneDNN and vector ISA, the kernel-choosing environment variables; every timing).

    python scripts/bench_emulator.py --seed 0 --samples 10000                       # a random 784-340-10
    python scripts/bench_emulator.py --artifact runs/fmnist-fc2-w4.loihi2 --lava-samples 50 \
        --goal-over-lava 5000 --out bench/emulator.json
    python scripts/bench_emulator.py --artifact runs/fmnist-vgg-w4.loihi2 --lava-samples 10 \
        --samples 2000 --repeats 5 --out bench/emulator-vgg.json
    python scripts/bench_emulator.py --artifact runs/fmnist-resnet-w4-conv.loihi2 --lava-samples 2 \
        --samples 200 --batch 100 --repeats 2 --stepped-samples 2 --out bench/emulator-resnet.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hwtune import numerics
from hwtune.artifact import Artifact, ArtifactError
from hwtune.atomic import atomic_write_text
from hwtune.backends.emulator import FastEmulator, emulate
from hwtune.data import load_dataset
from hwtune.layers import engine
from hwtune.layers.stage import Stage
from hwtune.provenance import provenance
from hwtune.random_artifacts import random_artifact

GOAL_EMULATOR_OVER_TORCH = 1.0     # emulator time over torch float32 time, at most (issue 33)
#: Environment variables that choose the kernels either side runs (recorded with the timings).
KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA")
#: CPU features that decide which kernels exist (recorded when /proc/cpuinfo lists them).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


class FloatNet(torch.nn.Module):
    """The float32 torch net of the artifact's graph, walked in its order: each layer's stage (its ops:
    pooling as average pooling, global pooling as a mean, flatten, concat; its synapse: conv2d,
    linear, identity, an add as the sum of its branches' stages), plus the bias, ReLU on every hidden
    layer. A branch's power of two (integer units) has no float counterpart and is left out."""

    def __init__(self, artifact: Artifact):
        super().__init__()
        self.sources = artifact.sources()
        self.stages = [float_stage(layer.stage) for layer in artifact.layers]
        self.biases = [torch.from_numpy(layer.bias.astype(np.float32)).reshape(-1, *(1,) * (len(layer.out_shape) - 1))
                       for layer in artifact.layers]

    def forward(self, x):
        nodes = [x]
        for stage, bias, sources in zip(self.stages, self.biases, self.sources):
            y = stage([nodes[p] for p in sources]) + bias
            nodes.append(torch.relu(y) if len(nodes) < len(self.stages) else y)
        return nodes[-1]


def float_stage(stage: Stage):
    """xs -> the float32 stage: its ops' torch forwards, then its synapse's (``torch_apply``) with q as
    float weights; a join of stages (add) sums its branches."""
    syn = stage.synapse
    if syn.n_inputs != 1:
        branches = [(float_stage(branch), branch.arity) for branch in syn.branches]

        def join(xs):
            ends = np.cumsum([arity for _, arity in branches])
            return sum(run(xs[end - arity:end]) for (run, arity), end in zip(branches, ends))
        return join
    weight = torch.from_numpy(syn.weight.astype(np.float32))

    def run(xs):
        xs = [x.reshape(len(x), *shape) for x, shape in zip(xs, stage.in_shapes)]
        for op in stage.ops:
            xs = [op.torch_apply(*xs)]
        return syn.torch_apply(syn, xs[0], weight, None)
    return run


def batched(fn, x, batch: int):
    return [fn(x[i:i + batch]) for i in range(0, len(x), batch)]


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def same(a, b) -> bool:
    """Every spike step and every logit equal (Lava observes no hidden potential)."""
    return all(np.array_equal(x, y) for x, y in zip(a.spike_steps, b.spike_steps)) and \
        np.array_equal(a.logits, b.logits)


def cpu_info() -> dict:
    """The CPU as the kernels see it: model name, vendor, family and model (what OpenBLAS's
    detection reads), and which of CPU_FLAGS it has (Linux /proc/cpuinfo; elsewhere the platform's name)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break                                   # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return {"model_name": platform.processor() or platform.machine()}
    flags = set(fields.get("flags", "").split())
    return {"model_name": fields.get("model name"), "vendor": fields.get("vendor_id"),
            "family": fields.get("cpu family"), "model": fields.get("model"),
            "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def kernels() -> dict:
    """What each side computes with: numpy's BLAS (threadpoolctl: library, version, the CPU
    architecture its kernels were chosen for, threads), torch's BLAS, oneDNN and vector ISA, the
    engine of the emulator's fast mode, and the kernel-choosing environment variables."""
    from threadpoolctl import threadpool_info
    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                None)
    libraries = [{key: info.get(key) for key in ("internal_api", "version", "architecture", "threading_layer",
                                                 "num_threads", "filepath")}
                 for info in threadpool_info() if info.get("user_api") == "blas"]
    for library in libraries:      # numpy's own (numpy.libs/ in a wheel) or another package's (scipy's)
        library["package"] = Path(library.pop("filepath") or "").parent.name.split(".")[0]
    return {"cpu": cpu_info(),
            "numpy_blas": [lib for lib in libraries if lib["package"] == "numpy"] or libraries,
            "other_blas": [lib for lib in libraries if lib["package"] != "numpy"],
            "torch": {"blas": blas, "mkl": next((line.strip(" -") for line in config.splitlines()
                                                 if "Math Kernel Library" in line), None),
                      "onednn": next((line.strip(" -") for line in config.splitlines() if "MKL-DNN" in line), None),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()},
            "emulator_engine": engine.active(),
            "environment": {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ}}


def check_lava_build(artifact: Artifact) -> None:
    """Refuse, before any timing, a net that the stock Loihi 2 build cannot hold (exit 3, no traceback)."""
    from hwtune.backends.lava.build import plan
    try:
        plan(artifact)
    except ArtifactError as e:
        print(f"bench_emulator: the stock Loihi 2 build refuses this net ({str(e)[:300]}); give --lava-samples 0, "
              "or fewer weight bits (--bits) for a random net", file=sys.stderr)
        sys.exit(3)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--artifact", help="artifact directory (default: a random 784-340-10 net)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=10000, help="samples for the fast mode and torch")
    p.add_argument("--stepped-samples", type=int, default=1000)
    p.add_argument("--lava-samples", type=int, default=50, help="samples in the one Lava run (0: skip Lava)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="threads of torch and of numpy's BLAS alike")
    p.add_argument("--bits", type=int, default=4, help="weight bits of the random net (4: what the stock Loihi 2 "
                                                        "build accepts for 784 inputs, like the FC2 artifact)")
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
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    rng = np.random.default_rng(args.seed)
    artifact = (Artifact.load(args.artifact) if args.artifact
                else random_artifact(rng, [784, 340, 10], bits=args.bits, steps=args.steps, slope=args.slope))
    if args.lava_samples:
        check_lava_build(artifact)
    dataset = artifact.meta.get("dataset", {}).get("name") if isinstance(artifact.meta.get("dataset"), dict) else None
    if dataset:
        u = load_dataset(dataset).test_x[:args.samples].reshape(-1, *artifact.input_shape).numpy()
    else:   # pixel intensities with 60 % background, as in (Fashion-)MNIST
        u = rng.random((args.samples, *artifact.input_shape)) * (rng.random((args.samples, *artifact.input_shape)) < 0.4)
    args.samples = len(u)
    k0 = numerics.encode_input(u, artifact.input_steps).astype(np.int64).reshape(len(u), -1)
    x = torch.from_numpy(u.astype(np.float32))
    net = FloatNet(artifact).eval()

    natural = engine.natural()
    slower = engine.ENGINES[engine.ENGINES.index(natural) + 1:]   # the other exact engines, slower

    def on(name):
        """The fast mode on engine ``name``, prepared once for a run's batches (FastEmulator), as streaming callers do."""
        with engine.forced(name):
            return FastEmulator(artifact)

    runs = {"fast": lambda: batched(FastEmulator(artifact), k0, args.batch),
            **{f"fast_{name}": (lambda name=name: batched(on(name), k0, args.batch)) for name in slower},
            "torch": lambda: batched(net, x, args.batch)}
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    with torch.no_grad():
        emulate(artifact, k0[:100]), [on(name)(k0[:100]) for name in slower], net(x[:100])     # warm-up
        for _ in range(args.repeats):
            for name, run in runs.items():
                wall, used, _ = timed(run)
                times[name].append(wall)
                cpu[name].append(used)
    n_step = min(args.stepped_samples, args.samples)
    times["stepped"], _, stepped = timed(lambda: emulate(artifact, k0[:n_step], mode="stepped"))
    fast = emulate(artifact, k0[:n_step])
    checks = {"stepped_equals_fast": same(stepped, fast),
              **{f"{name}_engine_equals_fast": same(on(name)(k0[:n_step]), fast) for name in slower}}
    rates = {name: args.samples / statistics.median(times[name]) for name in runs}
    rates["stepped"] = n_step / times["stepped"]
    lava_info = {}
    if args.lava_samples:
        from hwtune.backends.lava import run_lava
        n_lava = min(args.lava_samples, args.samples)
        times["lava"], _, lava = timed(lambda: run_lava(artifact, k0[:n_lava]))
        rates["lava"] = n_lava / times["lava"]
        checks["lava_equals_fast"] = same(lava, emulate(artifact, k0[:n_lava]))
        lava_info = {"samples": n_lava, "steps": lava.total_steps, "period": lava.period,
                     "ms_per_step": 1000 * times["lava"] / lava.total_steps}

    ratios = {"emulator_over_torch_time": rates["torch"] / rates["fast"],
              "emulator_over_torch_time_best": min(times["fast"]) / min(times["torch"]),
              "emulator_over_torch_cpu_time": statistics.median(cpu["fast"]) / statistics.median(cpu["torch"]),
              "engines_over_torch_time": {name: rates["torch"] / rates[run] for name, run in
                                          ((natural, "fast"), *((name, f"fast_{name}") for name in slower))}}
    if "lava" in rates:
        ratios["emulator_over_lava_speed"] = rates["fast"] / rates["lava"]
    used = kernels()
    print(f"net {'-'.join(str(n) for n in [artifact.n_in] + [l.n_out for l in artifact.layers])}, "
          f"windows {artifact.window_steps}, latency {artifact.latency_steps} steps, {args.threads} thread(s) each")
    blas = used["numpy_blas"][0] if used["numpy_blas"] else {}
    print(f"cpu {used['cpu'].get('model_name')} (family {used['cpu'].get('family')}, model {used['cpu'].get('model')}); "
          f"numpy BLAS {blas.get('internal_api')} {blas.get('version')} for {blas.get('architecture')}; torch "
          f"{used['torch']['blas']} + oneDNN, {used['torch']['cpu_capability']}; fast mode on {used['emulator_engine']}")
    print(f"{'backend':24s} {'samples/s':>12s}")
    for name, label in (("fast", f"emulator fast ({natural})"), *((f"fast_{e}", f"emulator fast ({e})") for e in slower),
                        ("stepped", "emulator stepped"), ("lava", "lava (stock build)"), ("torch", "torch float32")):
        if name in rates:
            print(f"{label:24s} {rates[name]:12.1f}")
    print(f"emulator / torch time: {ratios['emulator_over_torch_time']:.2f} (medians), "
          f"{ratios['emulator_over_torch_time_best']:.2f} (fastest runs), {ratios['emulator_over_torch_cpu_time']:.2f} "
          f"(CPU time)  (goal <= {GOAL_EMULATOR_OVER_TORCH}); each engine / torch: "
          + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios["engines_over_torch_time"].items()))
    if "emulator_over_lava_speed" in ratios:
        print(f"emulator / Lava speed: {ratios['emulator_over_lava_speed']:.0f}  (goal >= {args.goal_over_lava})")
    print("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    result = {"samples_per_s": rates, "ratios": ratios, "checks": checks, "times_s": times, "cpu_times_s": cpu,
              "lava": lava_info,
              "goals": {"emulator_over_lava_speed": args.goal_over_lava,
                        "emulator_over_torch_time": GOAL_EMULATOR_OVER_TORCH},
              "net": {"sizes": [artifact.n_in] + [l.n_out for l in artifact.layers],
                      "layers": [f"{type(l.synapse).__name__}{'+' + '+'.join(type(o).__name__ for o in l.ops) if l.ops else ''}"
                                 for l in artifact.layers],
                      "window_steps": artifact.window_steps, "weight_bits": artifact.weight_bits,
                      "artifact": args.artifact or f"random, {args.bits} bits, {args.slope} slopes"},
              "threads": {"torch": torch.get_num_threads(), "numpy_blas": [b["num_threads"] for b in used["numpy_blas"]]},
              "kernels": used,
              "inputs": f"{dataset} test images" if dataset else "random pixels",
              "provenance": provenance(args.seed, vars(args))}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

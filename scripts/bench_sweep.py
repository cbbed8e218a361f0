"""Sweep scale-out: wall time of a sweep's points on the serial executor vs the Ray executor, in one run.

The sweep is recipes/robustness-ci.yaml (digits, fc-small, loihi2, Lava checked spike for spike
on the noiseless points) on a larger grid, GRID: 108 points, about 2-3 min serial on 2 idle cores
(``--points N`` keeps the first N). Its size matters: each Ray worker starts cold (imports torch,
hwtune, Lava: about 5 s) and the last points leave a core idle: fixed costs f of a few seconds,
so serial / Ray ~ S / (S / 2 + f) for a serial time S. The grid is long enough for f to be a
small part, as in a real sweep (the 17-minute Fashion-MNIST sweep of issue 12). The base model is
trained once, untimed; every timed run loads it (``model: {load: ...}``) into a fresh directory,
so a run times the points plus loading the data and the base model (under 1 s). Each ray run gets a fresh local Ray instance (``--workers``
CPUs) whose start-up is reported apart, not timed, as a cluster is started once with ``ray
start``; its workers start cold (import torch and Lava) within the timed run, as those of every
new sweep on a running cluster do. The runs interleave (serial, ray, serial, ray, ...;
``--repeats``) so that machine load affects both alike, and every run's records must equal the
first serial run's. Reported:
ratio = median serial s / median ray s (goal >= 1.7 with 2 workers and 1 thread per point on 2
cores), as a table and ``bench/sweep.json`` (every time, versions, cores, the load average).
Run it on an idle machine: other work on the cores makes the ratio meaningless.

Expected scaling: the points are independent, so N nodes of c CPUs run min(N c / threads, points)
points at once, and wall time ~ max(serial time / that, the slowest point) + fixed costs: the
shared state (base model and dataset, a few MB) goes to each node once through Ray's object
store, and each worker process imports torch and Lava once (seconds). The slowest points (noisy
and fine-tuned: twice the fine-tuning) set the tail once points run out.

    OMP_NUM_THREADS=1 python scripts/bench_sweep.py --repeats 3    # 108 points (about 15 min)
    OMP_NUM_THREADS=1 python scripts/bench_sweep.py --backend-samples 0 --out bench/sweep-no-lava.json
    python scripts/bench_sweep.py --points 2 --out /tmp/sweep.json   # check that it runs

(OMP_NUM_THREADS=1: one BLAS thread per point on both executors, as Ray gives its workers.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import ray
import yaml

import hwtune
from hwtune import progress
from hwtune.atomic import write_json
from hwtune.configs import ExecutionConfig
from hwtune.provenance import provenance
from hwtune.sweep import parse_sweep, run_sweep

RECIPE = "recipes/robustness-ci.yaml"
GRID = {"bits": [8, 7, 6, 5, 4, 3], "steps": [16, 12, 8], "jitter": [0.0, 0.1, 0.2], "finetune": [False, True]}
GOAL = 1.7


@contextmanager
def executor_up(execution: ExecutionConfig, start_s: list[float]):
    """For the ray executor, a fresh local Ray instance for the block (its start-up seconds appended
    to ``start_s``); nothing for the serial one."""
    if execution.executor != "ray":
        yield
        return
    start = time.perf_counter()
    ray.init(address="local", num_cpus=execution.workers, include_dashboard=False, log_to_driver=False)
    start_s.append(time.perf_counter() - start)
    try:
        yield
    finally:
        ray.shutdown()


def timed_sweep(recipe: dict, out: Path, execution: ExecutionConfig) -> tuple[float, dict]:
    """(wall seconds, records by id) of one sweep of ``recipe`` into the new directory ``out``."""
    start = time.perf_counter()
    result = run_sweep(parse_sweep(recipe, RECIPE), out=out, execution=execution)
    return time.perf_counter() - start, {r["id"]: r for r in result["records"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=None, help="keep the first N points of the grid (default: all 108)")
    p.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--threads", type=int, default=1, help="torch threads per point, on both executors")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per executor, interleaved")
    p.add_argument("--backend-samples", type=int, default=None,
                   help="Lava's spike-for-spike check per noiseless point (default: the recipe's 10; 0 = none: Lava "
                        "forks processes of its own, which a serial run also spreads over the cores)")
    p.add_argument("--out", default="bench/sweep.json")
    args = p.parse_args(argv)
    progress.set_quiet(True)
    load_before = os.getloadavg()
    recipe = {key: value for key, value in yaml.safe_load(Path(RECIPE).read_text()).items()
              if key not in ("grid", "floors")}      # the floors name points of the CI grid
    if args.backend_samples is not None:
        recipe["backend_samples"] = args.backend_samples
    sweep = parse_sweep({**recipe, "grid": GRID}, RECIPE)
    points = sweep.points[:args.points]
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        data = hwtune.load_dataset(sweep.dataset, seed=sweep.seed)
        hwtune.save(hwtune.train(data, seed=sweep.seed, **sweep.train.to_dict()), Path(tmp, "base"))
        recipe = {**recipe, "model": {"load": str(Path(tmp, "base"))}, "points": points}
        runs = {"serial": ExecutionConfig(threads=args.threads),
                "ray": ExecutionConfig(executor="ray", workers=args.workers, threads=args.threads)}
        times, ray_start_s, reference = {name: [] for name in runs}, [], None
        for repeat in range(args.repeats):
            for name, execution in runs.items():
                with executor_up(execution, ray_start_s):
                    seconds, records = timed_sweep(recipe, Path(tmp, f"{name}-{repeat}"), execution)
                reference = reference or records
                if records != reference:
                    raise SystemExit(f"{name} run {repeat}: its records differ from the first serial run's")
                times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["serial"] / median["ray"]
    print(f"{'executor':9s} {'workers':>7s} {'median s':>9s} {'points/min':>10s}")
    for name, workers in (("serial", 1), ("ray", args.workers)):
        print(f"{name:9s} {workers:7d} {median[name]:9.1f} {60 * len(points) / median[name]:10.1f}")
    print(f"ratio serial / ray: {ratio:.2f} (goal >= {GOAL}); {len(points)} points, threads {args.threads}, "
          f"{os.cpu_count()} cores; Ray start-up {statistics.median(ray_start_s):.1f} s (not timed); "
          f"load average before {load_before[0]:.2f}")
    result = {"ratio_serial_to_ray": ratio, "median_s": median, "times_s": times, "goal": GOAL,
              "points": len(points), "backend_samples": recipe["backend_samples"], "workers": args.workers, "threads": args.threads, "cores": os.cpu_count(),
              "ray_start_s": ray_start_s, "load_average_before": load_before,
              "provenance": provenance(sweep.seed, vars(args))}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

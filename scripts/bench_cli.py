"""CLI start-up: wall time of `hwtune --help` and of each verb's --help, against a bare Python start.

Each command runs ``--repeats`` times in a subprocess, interleaved with ``python -c pass``; the
medians and their ratio are reported, and stderr must be empty (no warning on start-up). Goal:
``hwtune --help`` under 1 s. Output: a table and ``bench/cli.json``.

    python scripts/bench_cli.py --repeats 10
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from hwtune.atomic import write_json
from hwtune.cli import VERBS
from hwtune.provenance import provenance

GOAL_S = 1.0


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{cmd}: exit {res.returncode}: {res.stderr}")
    return elapsed, res.stderr


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="bench/cli.json")
    args = p.parse_args(argv)
    hwtune = shutil.which("hwtune") or f"{sys.prefix}/bin/hwtune"
    commands = {"python -c pass": [sys.executable, "-c", "pass"], "hwtune --help": [hwtune, "--help"],
                **{f"hwtune {verb} --help": [hwtune, verb, "--help"] for verb in VERBS}}
    times: dict[str, list[float]] = {name: [] for name in commands}
    warnings = {}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            elapsed, err = timed(cmd)
            times[name].append(elapsed)
            if err:
                warnings[name] = err[:300]
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["python -c pass"]
    print(f"{'command':28s} {'median s':>9s} {'/ python':>9s}")
    for name in commands:
        print(f"{name:28s} {med[name]:9.3f} {med[name] / base:9.1f}")
    slowest = max(v for k, v in med.items() if k.startswith("hwtune"))
    print(f"slowest hwtune --help: {slowest:.3f} s (goal < {GOAL_S} s); stderr output: {warnings or 'none'}")
    result = {"median_s": med, "ratio_to_bare_python": {k: v / base for k, v in med.items()}, "times_s": times,
              "stderr": warnings, "goal_s": GOAL_S, "provenance": provenance(None, vars(args))}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

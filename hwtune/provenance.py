"""What produced an output: package versions, seed, command line, time."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

_PACKAGES = ("hwtune", "torch", "brevitas", "lava-nc", "numpy", "ray")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict:
    """What changes float results besides the seed: the CPU, its cores, the threads in use, and the
    vector instructions torch's kernels use (AVX2 and AVX-512 round sums differently; the
    ATEN_CPU_CAPABILITY, DNNL_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS variables choose them)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    torch = sys.modules.get("torch")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads() if torch else None,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_capability": torch.backends.cpu.get_cpu_capability() if torch else None}


def provenance(seed: int | None = None, config: dict | None = None) -> dict:
    """Versions, machine, seed, the command line and a UTC timestamp, for hwtune.json and result files."""
    return {
        "versions": versions(),
        "machine": machine(),
        "seed": seed,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

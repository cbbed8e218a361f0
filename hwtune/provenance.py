"""What produced an output: package versions, seed, command line, time."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import sys
from pathlib import Path

_PACKAGES = ("hwtune", "torch", "brevitas", "lava-nc", "numpy")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(seed: int | None = None, config: dict | None = None) -> dict:
    """Versions, seed, the command line and a UTC timestamp, for hwtune.json and result files."""
    return {
        "versions": versions(),
        "seed": seed,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

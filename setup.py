"""The top-level data directories go into the wheel inside the package (pyproject.toml holds the
rest): targets/ -> hwtune/targets, recipes/ -> hwtune/bundled_recipes (found by hwtune.bundled).
Building on another Python than 3.10 stops first, saying so (pip would otherwise fail later, on
lava-nc, or say only that the version is not in '<3.11,>=3.10')."""
import sys

from setuptools import find_packages, setup

DATA = {"hwtune.targets": "targets", "hwtune.bundled_recipes": "recipes"}
#: The Python hwtune runs on: lava-nc 0.10.0, its Loihi 2 backend, imports only on 3.10 (pyproject's requires-python).
PYTHON = (3, 10)


def python_problem(version: tuple) -> str:
    """Why Python ``version`` (sys.version_info) cannot run hwtune, '' when it can."""
    if tuple(version[:2]) == PYTHON:
        return ""
    return (f"hwtune needs Python 3.10 (lava-nc 0.10.0, its Loihi 2 backend, imports only on 3.10); this is Python "
            f"{'.'.join(str(v) for v in version[:3])}. `make demo` builds a Python 3.10 environment (it finds "
            "python3.10 or a pyenv 3.10); by hand: python3.10 -m venv .venv && .venv/bin/pip install -e .")


if __name__ == "__main__":          # setuptools runs this file as __main__
    problem = python_problem(sys.version_info)
    if problem:
        sys.exit(f"error: {problem}")
    setup(packages=find_packages(include=["hwtune", "hwtune.*"]) + list(DATA),
          package_dir=DATA,
          package_data={name: ["*.yaml"] for name in DATA})

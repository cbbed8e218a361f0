"""The top-level data directories go into the wheel inside the package (pyproject.toml holds the
rest): targets/ -> hwtune/targets, recipes/ -> hwtune/bundled_recipes (found by hwtune.bundled)."""
from setuptools import find_packages, setup

DATA = {"hwtune.targets": "targets", "hwtune.bundled_recipes": "recipes"}

setup(packages=find_packages(include=["hwtune", "hwtune.*"]) + list(DATA),
      package_dir=DATA,
      package_data={name: ["*.yaml"] for name in DATA})

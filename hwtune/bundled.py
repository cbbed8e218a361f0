"""Where the data files shipped with hwtune live: the target YAMLs (``targets/``) and the example
recipes (``recipes/``) at the top of a checkout, which a wheel installs inside the package
(``hwtune/targets``, ``hwtune/bundled_recipes``; setup.py maps them)."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_IN_WHEEL = {"targets": "targets", "recipes": "bundled_recipes"}


def bundled_dir(name: str) -> Path:
    """The directory of the shipped ``name`` ("targets" or "recipes"): inside the installed package,
    else at the top of the checkout this package runs from."""
    installed = _PACKAGE / _IN_WHEEL[name]
    return installed if installed.is_dir() else _PACKAGE.parent / name


def find_recipe(path: str | Path) -> Path:
    """``path`` itself when it exists, else the shipped recipe of that name (``quickstart`` or
    ``quickstart.yaml`` -> recipes/quickstart.yaml), so that a wheel install runs the examples."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = bundled_dir("recipes") / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.is_file() else path


def bundled_recipes() -> list[str]:
    """Names of the shipped recipes."""
    directory = bundled_dir("recipes")
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []

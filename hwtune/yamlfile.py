"""Reading the project's YAML files (targets, recipes, sweeps) with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: str | Path, error: type[Exception], what: str) -> object:
    """Parsed YAML of ``path``; a missing or malformed file raises ``error`` naming it."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({e})") from None

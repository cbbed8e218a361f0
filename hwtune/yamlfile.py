"""Reading the project's YAML files (targets, recipes, sweeps) safely, with errors that name the file.

Only plain data (``yaml.safe_load``). Hostile files are refused before they can cost memory: files
over :data:`MAX_BYTES`, more than :data:`MAX_ALIASES` aliases, or a document that expands to more
than :data:`MAX_VALUES` values (an "anchor bomb" is small on disk but huge once expanded).
"""
from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_VALUES = 100_000


def expanded_size(value, limit: int = MAX_VALUES) -> int:
    """Number of scalars, lists and mappings in ``value`` counting shared references every time
    they occur; stops counting past ``limit``."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def read_yaml(path: str | Path, error: type[Exception], what: str) -> object:
    """Parsed YAML of ``path``; a missing, unreadable, malformed or hostile file raises ``error`` naming it."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{path}: {what} file is larger than {MAX_BYTES} bytes")
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: {what} file unreadable ({e})") from None
    try:
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))
        if aliases > MAX_ALIASES:
            raise error(f"{path}: {aliases} YAML aliases (more than {MAX_ALIASES}); refusing a possible "
                        "anchor bomb")
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({str(e)[:300]})") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply") from None
    if expanded_size(data) > MAX_VALUES:
        raise error(f"{path}: the YAML document expands to more than {MAX_VALUES} values; refusing it")
    return data

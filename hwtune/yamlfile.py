"""Reading the project's YAML files (targets, recipes, sweeps) safely, with errors that name the file.

Only plain data (a ``yaml.SafeLoader`` that also refuses a key given twice in one mapping: YAML
would silently keep the last). Hostile files are refused before they can cost memory or block:
anything but a regular file (a FIFO), files over :data:`MAX_BYTES`, more than
:data:`MAX_ALIASES` aliases, or a document that expands to more than :data:`MAX_VALUES` values
(an "anchor bomb" is small on disk but huge once expanded).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from hwtune.safepaths import regular_file

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys in a mapping (a ConstructorError naming the line)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found the key {key!r} twice",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, error: type[Exception], what: str) -> object:
    """Parsed YAML of ``path``; a missing, unreadable, malformed or hostile file raises ``error`` naming it."""
    path = regular_file(path, error, f"{what} file")
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
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({str(e)[:300]})") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply") from None
    if expanded_size(data) > MAX_VALUES:
        raise error(f"{path}: the YAML document expands to more than {MAX_VALUES} values; refusing it")
    return data

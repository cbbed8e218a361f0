"""Reading the project's YAML files (targets, recipes, sweeps) safely, with errors that name the file.

Only plain data (a ``yaml.SafeLoader`` that also refuses a key given twice in one mapping, which
YAML would silently resolve to the last, and a key that is a list or mapping; merge keys ``<<: *a``
work as YAML defines them). Hostile files are refused before they can cost memory, time or block:
anything but a regular file (a FIFO), files over :data:`MAX_BYTES`, lists and mappings nested more
than :data:`MAX_DEPTH` deep (counted on the parser's event stream, which stops there: the parser
would otherwise spend minutes on a 1 MB file nested 500,000 deep), more than :data:`MAX_ALIASES`
aliases, or a document that expands to more than :data:`MAX_VALUES` values (an "anchor bomb" is
small on disk but huge once expanded).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from hwtune.safepaths import read_file

MAX_BYTES = 1_000_000
MAX_ALIASES = 100
MAX_VALUES = 100_000
MAX_DEPTH = 64


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


_MERGE = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key given twice in a mapping and a key that is a list or mapping (a
    ConstructorError naming the line); merge keys (``<<``) are resolved as YAML defines them (the
    mapping's own keys override merged ones)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, "found a key that is a list or a mapping "
                        "(keys are plain names)", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found the key {key!r} twice",
                        key_node.start_mark)
                seen.add(key)
            self.flatten_mapping(node)
        return super().construct_mapping(node, deep=deep)


def _check_events(text: str, path: Path, error: type[Exception]) -> None:
    """Refuse nesting beyond MAX_DEPTH and more than MAX_ALIASES aliases, stopping at the first
    event beyond either (before the parser's cost grows with the depth)."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise error(f"{path}: lists and mappings nested more than {MAX_DEPTH} deep (line "
                            f"{event.start_mark.line + 1}); refusing it")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise error(f"{path}: more than {MAX_ALIASES} YAML aliases; refusing a possible anchor bomb")


def read_yaml(path: str | Path, error: type[Exception], what: str) -> object:
    """Parsed YAML of ``path``; a missing, unreadable, malformed or hostile file raises ``error`` naming it."""
    path = Path(path)
    try:
        text = read_file(path, error, f"{what} file", MAX_BYTES).decode()
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what} file unreadable ({e})") from None
    try:
        _check_events(text, path, error)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({str(e)[:300]})") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply") from None
    if expanded_size(data) > MAX_VALUES:
        raise error(f"{path}: the YAML document expands to more than {MAX_VALUES} values; refusing it")
    return data

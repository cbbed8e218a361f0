"""Regenerate the README's command reference from the CLI parser (help and README cannot drift).

    python scripts/make_cli_reference.py          # rewrites README.md between the cli markers

tests/test_cli.py checks that README.md holds exactly what :func:`reference` returns.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hwtune.cli import VERBS, build_parser

START, END = "<!-- cli:start -->", "<!-- cli:end -->"


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.dest.upper()
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        return ", ".join(action.option_strings)
    metavar = action.metavar or ("{" + ",".join(map(str, action.choices)) + "}" if action.choices else "X")
    return ", ".join(action.option_strings) + " " + metavar


def reference() -> str:
    """Markdown: one table per verb (flag, meaning with unit and default)."""
    subs = next(a for a in build_parser()._actions if a.dest == "command").choices
    lines = []
    for verb, parser in subs.items():
        text, example = VERBS[verb]
        lines += [f"#### `hwtune {verb}`", "", f"{text}. Example: `{example}`", "", "| argument | meaning |",
                  "|---|---|"]
        for action in parser._actions:
            if action.dest == "help":
                continue
            meaning = (action.help or "").replace("|", "\\|")
            lines.append(f"| `{_flag(action)}` | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main() -> None:
    readme = Path("README.md")
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{reference()}\n{END}{tail}")
    print("README.md command reference updated")


if __name__ == "__main__":
    main()

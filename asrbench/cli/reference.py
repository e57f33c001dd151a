"""The CLI reference (docs/cli.md), generated from the parser: every command's --help in
Markdown. `python -m asrbench.cli.reference > docs/cli.md` rewrites it; a test fails when the
file is not what this prints."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator

from asrbench.cli.main import build_parser

#: help is wrapped at this width whatever the terminal, so the file is the same everywhere
WIDTH = 100

HEADER = """\
# asrbench command-line reference

Every command's `--help`, generated from the parser: do not edit by hand. After changing an
option, run `python -m asrbench.cli.reference > docs/cli.md` (tests/test_cli_reference.py
fails until the file is current). The pytest plugin takes the same run and policy options as
`--asrbench-<name>`; see the README.
"""


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser, then each subcommand's (depth first, in the order they were added)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for sub in action.choices.values():
                if id(sub) not in seen:  # an alias names the same parser twice
                    seen.add(id(sub))
                    yield from _parsers(sub)


def _help(parser: argparse.ArgumentParser) -> str:
    original = parser.formatter_class
    # (typeshed's formatter protocol names prog only; every HelpFormatter takes width)
    parser.formatter_class = functools.partial(original, width=WIDTH)  # type: ignore[call-arg]
    try:
        return parser.format_help()
    finally:
        parser.formatter_class = original


def render() -> str:
    """The whole reference as Markdown."""
    parts = [HEADER]
    for parser in _parsers(build_parser()):
        parts.append(f"## {parser.prog}\n\n```text\n{_help(parser).rstrip()}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())

"""`asrbench`: the parser of every command (one module per command under asrbench/cli/) and
the entry point. Parsing only; user errors are one line and exit status 2."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from asrbench import __version__
from asrbench.cli import ab, baseline, bisect, compare, export, history, html, merge, peers, run
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.redact import redact, redact_usage
from asrbench.measure.distributed import detect_launch
from asrbench.processes import hold_collections
from asrbench.render.text import terminal_safe

#: the commands in the order `asrbench --help` lists them
COMMAND_MODULES = (run, merge, compare, peers, baseline, history, html, export, ab, bisect)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are redacted: `unrecognized arguments: --token
    hf_...` quotes what the user typed (subcommands' parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        super().error(redact_usage(message))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (each sets `func`, the command to call)."""
    parser = _Parser(
        prog="asrbench",
        description="Regression benchmark suite for sequence-to-sequence speech recognition "
                    "(Whisper) on Gaudi HPU, CUDA and CPU.")
    parser.add_argument("--version", action="version", version=f"asrbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; `asrbench` alone (or only options) is `asrbench run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(ab.join_verbatim(argv))
    if args.command is None:
        # `asrbench` alone runs the embedded default, like `asrbench run`.
        args = parser.parse_args(["run", *argv])
    return args


def _launch_or_none():
    try:
        return detect_launch()
    except AsrbenchError:
        return None  # reported by the command itself


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Entry point: user errors print one line and exit 2, never a traceback. `own_process`:
    this process is asrbench's own (entry()), not a caller's that goes on after it returns."""
    args = parse(argv)
    if own_process and args.command == "run":
        hold_collections()  # until the model is loaded (measure.session)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    launch = _launch_or_none()
    where = f"{launch.label}: " if launch is not None and launch.world_size > 1 else ""
    try:
        return args.func(args)
    except AsrbenchError as exc:
        # redacted: a message quotes what the user gave (a model URL with a password, a path
        # holding a token), and CI logs keep it
        print(terminal_safe(redact(f"asrbench: error: {where}{exc}"), newlines=False),
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `asrbench history list | head -1`: the reader left. Nothing more can be said there;
        # stdout goes to /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not where:
            raise
        # One rank of several: the traceback, then one line naming the rank, so the launcher's
        # output says which rank failed and why.

        traceback.print_exc()
        first = first_line(exc)
        print(terminal_safe(redact(f"asrbench: error: {where}failed: {type(exc).__name__}: "
                                   f"{first}"), newlines=False), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asrbench: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `asrbench` console script and `python -m asrbench`: main() in a process of its own.
    At the end, everything still alive goes into the collector's permanent generation first:
    the interpreter's shut-down would otherwise collect over every object torch and
    transformers made (about 0.8 s of a 9 s counters-only run on a quiet 2-core machine),
    memory the operating system frees anyway. Exit handlers, module teardown and reference
    counting still run; the reports are written and closed before this (atomic writes)."""
    code = main(own_process=True)
    gc.freeze()
    sys.exit(code)

"""`asrbench export`: a report in pytest-benchmark's or github-action-benchmark's format."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.errors import AsrbenchError
from asrbench.formats.io import load_report, write_json_atomic
from asrbench.history.export import DIRECTIONS, FORMATS, export

HELP = """\
Write a report in a format other benchmark tools read:
  pytest-benchmark          pytest-benchmark's JSON (pytest-benchmark compare, dashboards):
                            one benchmark per run, one round per timed pass
  github-action-benchmark   github-action-benchmark's custom JSON; --direction bigger
                            (samples/s, tool customBiggerIsBetter) or smaller (WER, normalized
                            WER, CER; tool customSmallerIsBetter): one file per direction

  asrbench export --report reports/latest.json --format pytest-benchmark --out bench.json
  asrbench export --report reports/latest.json --format github-action-benchmark \\
      --direction bigger --out gab-throughput.json
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a report as pytest-benchmark or "
                                      "github-action-benchmark JSON",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_report(p, "report to export")
    p.add_argument("--format", required=True, choices=FORMATS, dest="format")
    p.add_argument("--direction", choices=DIRECTIONS,
                   help="github-action-benchmark only: bigger (samples/s) or smaller "
                        "(error rates)")
    p.add_argument("--commit", metavar="SHA",
                   help="pytest-benchmark only: commit_info.id (default the report's)")
    p.add_argument("--branch", metavar="NAME",
                   help="pytest-benchmark only: commit_info.branch")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Convert the report, write it atomically."""
    if args.format == "github-action-benchmark" and (args.commit or args.branch):
        raise AsrbenchError("--commit and --branch are for --format pytest-benchmark only "
                            "(github-action-benchmark takes the commit from the workflow)")
    common.refuse_writing_over(args.out, "--out", args.report)
    report = load_report(args.report)
    document = export(report, args.format, args.direction, args.commit, args.branch)
    try:
        write_json_atomic(args.out, document)
    except OSError as exc:
        raise AsrbenchError(f"--out {args.out}: cannot be written "
                            f"({exc.strerror or exc})") from None
    count = len(document["benchmarks"]) if isinstance(document, dict) else len(document)
    say(f"written {count} {'benchmark(s)' if isinstance(document, dict) else 'entries'} "
          f"as {args.format} to {args.out}")
    return 0

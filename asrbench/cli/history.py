"""`asrbench history add|list|show|changes`: the results store."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from asrbench.cli import common
from asrbench.cli.common import say, say_json
from asrbench.errors import AsrbenchError
from asrbench.formats.io import check_writable, write_json_atomic
from asrbench.formats.model import dump
from asrbench.history.changepoints import DEFAULT_MIN_SIZE, METRICS, series_changes
from asrbench.history.store import add_report, open_store
from asrbench.render.history import (
    added_line,
    changes_text,
    report_lines,
    reports_table,
    runs_table,
)

HELP = """\
The results store: every report added once, in order. --history (default $ASRBENCH_HISTORY,
else history.sqlite) is a file path (SQLite, created by the first `add`) or a
postgresql://user@host:port/database URL (many runners, one store; same schema).

  asrbench history add --report reports/latest.json [--commit SHA] [--branch main]
  asrbench history list [--limit 20]
  asrbench history show [latest | #3 | 3 | <commit prefix>]
  asrbench history changes [--config ID] [--metric samples_per_second ...]
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    history = sub.add_parser("history", help="the results store: add, list, show, changes",
                             description=HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="append a report to the store (once)",
                             description="Append a report (environment, commit, device class, "
                                         "every run's metrics, timings and per-pass samples) "
                                         "to the store in one transaction. The same report "
                                         "twice is refused.")
    common.add_report(add, "report to add")
    common.add_history(add)
    add.add_argument("--commit", metavar="SHA",
                     help="file the report under this commit (e.g. for a report made outside "
                          "git); the report's own commit is kept beside it")
    add.add_argument("--branch", metavar="NAME", help="the branch the report was made on")
    add.set_defaults(func=_history_add)

    listing = actions.add_parser("list", help="the stored reports, oldest first")
    common.add_history(listing)
    listing.add_argument("--limit", type=_positive, metavar="N", help="only the last N")
    listing.set_defaults(func=_history_list)

    show = actions.add_parser("show", help="one stored report and its runs")
    show.add_argument("ref", nargs="?", default="latest",
                      help="latest (default), a report id (3 or #3) or a commit prefix")
    common.add_history(show)
    show.add_argument("--json", action="store_true", help="print the stored report JSON")
    show.set_defaults(func=_history_show)

    changes = actions.add_parser(
        "changes", help="commits where a config's samples/s or error rates stepped and stayed",
        description="Run PELT change-point detection (ruptures) over each config's history "
                    "and list the commits where a persistent step started, with its size. "
                    "Finds creeping regressions that each stayed inside the per-PR band.")
    common.add_history(changes)
    changes.add_argument("--config", metavar="ID", help="only this config id")
    changes.add_argument("--device-class", metavar="CLASS", help="only this device class")
    changes.add_argument("--metric", nargs="+", choices=tuple(METRICS), metavar="METRIC",
                         help=f"metrics to scan (default all: {', '.join(METRICS)})")
    changes.add_argument("--min-size", type=_positive, default=None, metavar="N",
                         help="runs that must agree on each side of a step (default 2)")
    changes.add_argument("--min-change", type=_non_negative, default=None, metavar="X",
                         help="smallest step reported, for every metric scanned: relative "
                              "for samples/s (default 0.02), absolute for error rates (default "
                              "0.001); set it with one kind of --metric at a time")
    common.add_json(changes, "them")
    changes.set_defaults(func=_history_changes)
    return history


def _history_add(args: argparse.Namespace) -> int:
    say(added_line(add_report(args.history, args.report, commit=args.commit,
                              branch=args.branch)))
    return 0


def _history_list(args: argparse.Namespace) -> int:
    with open_store(args.history) as store:
        stored = store.reports(args.limit)
        name = store.name
    if not stored:
        say(f"history {name}: no reports")
        return 0
    say(reports_table(stored))
    say(f"{len(stored)} report(s) shown from {name} (* = local changes)")
    return 0


def _history_show(args: argparse.Namespace) -> int:
    with open_store(args.history) as store:
        stored = store.find(args.ref)
        if args.json:
            say_json(dump(store.load(stored.id)))
            return 0
        points = store.runs_of(stored.id)
    for line in report_lines(stored):
        say(line)
    say(runs_table(points))
    return 0


def _history_changes(args: argparse.Namespace) -> int:
    metrics = args.metric or list(METRICS)
    if args.json:
        check_writable(Path(args.json), "--json")  # before the scan, not after it
    with open_store(args.history) as store:
        series = store.series(config_id=args.config, device_class=args.device_class)
        name = store.name
    if not series:
        what = " of " + " ".join(filter(None, [args.config, args.device_class])) \
            if args.config or args.device_class else ""
        raise AsrbenchError(f"history {name} holds no runs{what}")
    found = []
    for key in sorted(series):
        for metric in metrics:
            found += series_changes(series[key], metric, args.min_size or DEFAULT_MIN_SIZE,
                                    args.min_change)
    say(changes_text(found, len(series) * len(metrics)))
    if args.json:
        try:
            write_json_atomic(args.json, {"history": name,
                                          "changes": [c.to_dict() for c in found]})
        except OSError as exc:
            raise AsrbenchError(f"--json {args.json}: cannot be written "
                                f"({exc.strerror or exc})") from None
        say(f"written to {args.json}")
    return 0

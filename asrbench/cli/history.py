"""The command line of the results store, the HTML report and the exports:
`asrbench history add|list|show|changes`, `asrbench html`, `asrbench export`.

cli.py adds these with `add_parsers(sub)` and dispatches through COMMANDS; every user error is
an AsrbenchError (one line, exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from asrbench.errors import AsrbenchError

DEFAULT_REPORT = Path("reports") / "latest.json"
DEFAULT_BASELINE_DIR = Path("baselines")

HISTORY_HELP = """\
The results store: every report added once, in order. --history (default $ASRBENCH_HISTORY,
else history.sqlite) is a file path (SQLite, created by the first `add`) or a
postgresql://user@host:port/database URL (many runners, one store; same schema).

  asrbench history add --report reports/latest.json [--commit SHA] [--branch main]
  asrbench history list [--limit 20]
  asrbench history show [latest | #3 | 3 | <commit prefix>]
  asrbench history changes [--config ID] [--metric samples_per_second ...]
"""

HTML_HELP = """\
Write one self-contained HTML file (plotly.js and the data inlined; opens with no network):
per config, trend charts over the history of samples/s (with the baseline band), WER, CER and
graph compilations, the current run highlighted and the change points marked; the verdict
table (as `asrbench compare` judges); changed transcripts as word diffs; environment and commit.
Without --history the charts hold the report alone.

  asrbench html --report reports/latest.json --history history.sqlite --out reports/report.html
"""

EXPORT_HELP = """\
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


def _history_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", metavar="URL",
                   help="the store: a file path (SQLite) or a postgresql:// URL (default "
                        "$ASRBENCH_HISTORY, else history.sqlite)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_parsers(sub: Any) -> None:
    """Add `history`, `html` and `export` to the subcommands of asrbench's parser."""
    from asrbench.history.changepoints import METRICS
    from asrbench.history.export import DIRECTIONS, FORMATS

    history = sub.add_parser("history", help="the results store: add, list, show, changes",
                             description=HISTORY_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="append a report to the store (once)",
                             description="Append a report (environment, commit, device class, "
                                         "every run's metrics, timings and per-pass samples) "
                                         "to the store in one transaction. The same report "
                                         "twice is refused.")
    add.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                     help=f"report to add (default {DEFAULT_REPORT})")
    _history_argument(add)
    add.add_argument("--commit", metavar="SHA",
                     help="file the report under this commit (e.g. for a report made outside "
                          "git); the report's own commit is kept beside it")
    add.add_argument("--branch", metavar="NAME", help="the branch the report was made on")

    listing = actions.add_parser("list", help="the stored reports, oldest first")
    _history_argument(listing)
    listing.add_argument("--limit", type=_positive, metavar="N", help="only the last N")

    show = actions.add_parser("show", help="one stored report and its runs")
    show.add_argument("ref", nargs="?", default="latest",
                      help="latest (default), a report id (3 or #3) or a commit prefix")
    _history_argument(show)
    show.add_argument("--json", action="store_true", help="print the stored report JSON")

    changes = actions.add_parser(
        "changes", help="commits where a config's samples/s or error rates stepped and stayed",
        description="Run PELT change-point detection (ruptures) over each config's history "
                    "and list the commits where a persistent step started, with its size. "
                    "Finds creeping regressions that each stayed inside the per-PR band.")
    _history_argument(changes)
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
    changes.add_argument("--json", type=Path, metavar="PATH", help="also write them as JSON")

    page = sub.add_parser("html", help="self-contained HTML report with trend charts",
                          description=HTML_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    page.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                      help=f"the current report (default {DEFAULT_REPORT})")
    page.add_argument("--history", metavar="URL",
                      help="the store whose history the charts show (a path or postgresql:// "
                           "URL; default: none, the report alone)")
    page.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR,
                      help=f"baselines for the verdicts and the band (default "
                           f"{DEFAULT_BASELINE_DIR})")
    page.add_argument("--out", type=Path, required=True, help="the HTML file to write")

    export = sub.add_parser("export", help="write a report as pytest-benchmark or "
                                           "github-action-benchmark JSON",
                            description=EXPORT_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                        help=f"report to export (default {DEFAULT_REPORT})")
    export.add_argument("--format", required=True, choices=FORMATS, dest="format")
    export.add_argument("--direction", choices=DIRECTIONS,
                        help="github-action-benchmark only: bigger (samples/s) or smaller "
                             "(error rates)")
    export.add_argument("--commit", metavar="SHA",
                        help="pytest-benchmark only: commit_info.id (default the report's)")
    export.add_argument("--branch", metavar="NAME",
                        help="pytest-benchmark only: commit_info.branch")
    export.add_argument("--out", type=Path, required=True, help="the JSON file to write")


# -- the commands -------------------------------------------------------------------------------

def command_history(args: argparse.Namespace) -> int:
    action = {"add": _history_add, "list": _history_list, "show": _history_show,
              "changes": _history_changes}[args.history_command]
    return action(args)


def _history_add(args: argparse.Namespace) -> int:
    from asrbench.history.store import add_report

    print(add_report(args.history, args.report, commit=args.commit, branch=args.branch))
    return 0


def _row_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _history_list(args: argparse.Namespace) -> int:
    from asrbench.history.store import open_store

    with open_store(args.history) as store:
        stored = store.reports(args.limit)
        name = store.name
    if not stored:
        print(f"history {name}: no reports")
        return 0
    rows = [("id", "commit", "branch", "device class", "runs", "created", "added")]
    rows += [(f"#{s.id}", (s.commit or "-")[:12] + ("*" if s.dirty else ""), s.branch or "-",
              s.device_class or "-", str(s.runs), s.created or "-", s.added) for s in stored]
    print(_row_table(rows))
    print(f"{len(stored)} report(s) shown from {name} (* = local changes)")
    return 0


def _history_show(args: argparse.Namespace) -> int:
    from asrbench.history.store import open_store
    from asrbench.formats.model import dump

    with open_store(args.history) as store:
        stored = store.find(args.ref)
        if args.json:
            print(json.dumps(dump(store.load(stored.id)), indent=2, ensure_ascii=False))
            return 0
        points = store.runs_of(stored.id)
    print(f"report {stored.label}: commit {stored.commit or '-'}"
          + (f" (the report says {stored.report_commit})"
             if stored.report_commit and stored.report_commit != stored.commit else "")
          + (", with local changes" if stored.dirty else ""))
    print(f"branch {stored.branch or '-'}, device class {stored.device_class or '-'}, created "
          f"{stored.created or '-'}, added {stored.added} from {stored.source or '-'}")
    rows = [("config", "WER", "WER norm", "CER", "samples/s", "RSD", "passes", "compilations")]
    for p in points:
        rows.append((p.config_id, f"{p.wer:.4f}",
                     "-" if p.wer_normalized is None else f"{p.wer_normalized:.4f}",
                     f"{p.cer:.4f}", f"{p.samples_per_second:.4g}", f"{p.rsd:.1%}",
                     str(p.passes), "-" if p.compilations_timed is None
                     else str(p.compilations_timed)))
    print(_row_table(rows))
    return 0


def _history_changes(args: argparse.Namespace) -> int:
    from asrbench.history.changepoints import (DEFAULT_MIN_SIZE, METRICS, changes_text, series_changes)
    from asrbench.history.store import open_store
    from asrbench.formats.io import write_json_atomic

    metrics = args.metric or list(METRICS)
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
    print(changes_text(found, len(series) * len(metrics)))
    if args.json:
        write_json_atomic(args.json, {"history": name, "changes": [c.to_dict() for c in found]})
        print(f"written to {args.json}")
    return 0


def command_html(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from asrbench.history.store import open_store
    from asrbench.render.html import build_html, write_html
    from asrbench.formats.io import load_report

    report = load_report(args.report)
    context = open_store(args.history) if args.history else nullcontext(None)
    with context as store:
        text = build_html(report, store, args.baseline_dir, report_path=args.report)
    write_html(args.out, text)
    print(f"written to {args.out} ({len(text.encode('utf-8')) / 1e6:.1f} MB, self-contained)")
    return 0


def command_export(args: argparse.Namespace) -> int:
    from asrbench.history.export import export
    from asrbench.formats.io import load_report, write_json_atomic

    if args.format == "github-action-benchmark" and (args.commit or args.branch):
        raise AsrbenchError("--commit and --branch are for --format pytest-benchmark only "
                            "(github-action-benchmark takes the commit from the workflow)")
    report = load_report(args.report)
    document = export(report, args.format, args.direction, args.commit, args.branch)
    try:
        write_json_atomic(args.out, document)
    except OSError as exc:
        raise AsrbenchError(f"--out {args.out}: cannot be written "
                            f"({exc.strerror or exc})") from None
    count = len(document["benchmarks"]) if isinstance(document, dict) else len(document)
    print(f"written {count} {'benchmark(s)' if isinstance(document, dict) else 'entries'} "
          f"as {args.format} to {args.out}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "history": command_history, "html": command_html, "export": command_export}

"""`asrbench html`: one self-contained HTML report with trend charts."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from asrbench import flow
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.formats.io import load_report
from asrbench.history.changepoints import report_history
from asrbench.history.store import open_store
from asrbench.render.html import build_html, write_html

HELP = """\
Write one self-contained HTML file (plotly.js and the data inlined; opens with no network):
per config, trend charts over the history of samples/s (with the baseline band), WER, CER and
graph compilations, the current run highlighted and the change points marked; the verdict
table (as `asrbench compare` judges); changed transcripts as word diffs; environment and commit.
Without --history the charts hold the report alone.

  asrbench html --report reports/latest.json --history history.sqlite --out reports/report.html
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("html", help="self-contained HTML report with trend charts",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_report(p, "the current report")
    common.add_history(p, "the store whose history the charts show (a path or postgresql:// "
                          "URL; default: none, the report alone)")
    common.add_baseline_dir(p, "baselines for the verdicts and the band")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Read what the store holds about the report, judge it (as `asrbench compare` does),
    build the page from that data, write it."""
    common.refuse_writing_over(args.out, "--out", args.report)
    common.refuse_writing_over(args.out, "--out", args.history, what="the history store it reads")
    report = load_report(args.report)
    context = open_store(args.history) if args.history else nullcontext(None)
    with context as store:
        history = report_history(report, store)
    outcome = flow.judge_loaded(report, args.baseline_dir, args.report)
    text = build_html(report, outcome, history)
    write_html(args.out, text)
    say(f"written to {args.out} ({len(text.encode('utf-8')) / 1e6:.1f} MB, self-contained)")
    return 0

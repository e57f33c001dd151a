"""`asrbench baseline update`: rewrite stored baseline entries from reports, on purpose."""

from __future__ import annotations

import argparse
from typing import Any

from asrbench import flow
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.errors import AsrbenchError
from asrbench.gate.baselines import check_tolerance
from asrbench.render.text import baseline_update_text


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("baseline", help="manage stored baselines")
    actions = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    update = actions.add_parser(
        "update", help="rewrite baseline entries from a report, on purpose",
        description="Rewrite the entries of the report's configs in <baseline dir>/<device class>"
                    ".json (others are kept), atomically and under a lock; prints old -> new.")
    common.add_report(update, "report(s) to take the numbers from; several reports of the same "
                              "configs, each from its own `asrbench run` process, record the "
                              "spread between processes, and the throughput band comes from it "
                              "(3 or more recommended)", many=True)
    common.add_baseline_dir(update, "where the baseline files live")
    update.add_argument("--only", nargs="+", metavar="ID", help="update only these config ids")
    update.add_argument("--tolerance", action="append", default=[], metavar="NAME=VALUE",
                        help="set a tolerance on the written entries, e.g. "
                             "samples_per_second_rel=0.4 "
                             "(names: wer_abs, cer_abs, samples_per_second_rel, noise_factor, "
                             "reference_share_min, reference_wer_max, cpu_share_min); "
                             "entries otherwise keep the overrides they had")
    update.add_argument("--counters-only", action="store_true",
                        help="record only the report's work counters into the existing entries "
                             "(whose transcripts they must match), keeping every other field: "
                             "counts from a run whose throughput must not become the baseline "
                             "(a loaded runner, one pass)")
    update.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Rewrite selected entries from one or more reports."""
    given: dict[str, float | None] = {}
    for item in args.tolerance:
        name, sep, value = item.partition("=")
        try:
            given[name] = float(value) if sep else None
        except ValueError:
            raise AsrbenchError(f"--tolerance {item}: value is not a number") from None
        if not sep:
            raise AsrbenchError(f"--tolerance {item}: expected NAME=VALUE")
    tolerance = check_tolerance(given, "--tolerance") if given else None
    say(baseline_update_text(flow.record_baselines(
        args.report, args.baseline_dir, only=args.only, tolerance=tolerance,
        counters_only=args.counters_only)))
    return 0

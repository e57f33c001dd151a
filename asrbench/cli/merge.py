"""`asrbench merge`: the reports of a split's scheduler shards pooled into one report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from asrbench.cli.common import refuse_writing_over, say
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.io import check_writable, load_report, write_report
from asrbench.formats.merge import THROUGHPUT_RULE, merge_reports
from asrbench.gate.accuracy import check_edits

HELP = """\
Pool the reports of `asrbench run --shard I/N` (one per shard of a split, e.g. one per Slurm
array task or Kubernetes Indexed Job pod) into the report one unsharded run would have written:
the same config ids (and baseline entries), transcripts (the union, in split order), error rates
(summed edits over summed words, never a mean of the shards' rates) and counters (every shard
counts the whole split's first batch; where the shards' counts differ, the merged run has none
and says so). samples/s is all samples over the shards' summed timed pass seconds, pass by pass:
work per device, as one process measures it, not the job's wall time. Latencies are pooled.

Refused (exit 2): a shard missing or given twice, shards of different configs, code versions,
shard counts or splits (split fingerprints). `compare`, `baseline update`, `history add`, `html`
and `pytest --asrbench-from-report` take the merged report like any other.

  asrbench merge reports/shard-*.json --report reports/merged.json
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("merge", help="pool scheduler shards' reports into one report",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shards", type=Path, nargs="+", metavar="REPORT",
                   help="every shard's report (`asrbench run --shard I/N --report ...`)")
    p.add_argument("--report", type=Path, required=True, help="the merged report to write")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Load every shard's report, pool them, write the merged report atomically."""
    # the shard's own report is what a merge is redone from
    refuse_writing_over(args.report, "--report", *args.shards, what="one of the shards' reports")
    check_writable(args.report)
    shards = [(str(path), load_report(path)) for path in args.shards]
    for path, shard in shards:  # the numbers pooled are checked as `compare` checks a run's
        for run in shard.runs:
            try:
                check_edits(run)
            except AsrbenchError as exc:
                raise AsrbenchError(f"{path}: {exc}") from None
    try:
        merged = merge_reports(shards)
    except (ValueError, ArithmeticError) as exc:  # numbers no run of asrbench writes
        raise AsrbenchError(f"the shards cannot be merged: {first_line(exc)}") from None
    try:
        write_report(args.report, merged)
    except OSError as exc:  # a full disk, a read-only folder
        raise AsrbenchError(f"--report {args.report}: cannot be written "
                            f"({exc.strerror or exc})") from None
    for run in merged.runs:
        info = run.merged
        say(f"{run.config.id}: {info.shards if info else '?'} shards, "
            f"{len(run.utterances)} utterances, WER {run.metrics.wer:.4f}, CER "
            f"{run.metrics.cer:.4f}, {run.metrics.samples_per_second:.3g} samples/s; counters "
            f"{info.counters if info else '?'}")
    say(f"samples/s = {THROUGHPUT_RULE}")
    say(f"report written to {args.report}")
    return 0

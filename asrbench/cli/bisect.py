"""`asrbench bisect GOOD BAD`: the first commit where the counters or the throughput changed
(the work is in asrbench.ab.bisect)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from asrbench.ab.bisect import bisect
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.errors import AsrbenchError
from asrbench.render.text import terminal_safe

HELP = """\
Find the first commit between GOOD and BAD whose measurement differs from GOOD's, with `git
bisect run` in a temporary worktree of --repo (your checkout and its own bisect state are not
touched; the worktree is removed at the end, also on errors and Ctrl-C). Each commit is
measured by `asrbench run` in a fresh process whose working directory and PYTHONPATH are the
worktree, so that commit's asrbench runs.

--metric counters (default; exact and fast: one `asrbench run --counters-only` per commit, or
one timed pass where the commit's asrbench predates that option): a commit is bad when its work
counters differ from GOOD's. --metric throughput (slow: an A/B of 4 to 9 rounds of fresh
processes per commit, against a second worktree held at GOOD): bad when the A/B says DIFFERENT,
skipped when it cannot decide. A commit that cannot be judged (its measurement fails, it was
not counted, or it counts under other counter definitions than GOOD) is skipped and listed,
never judged bad. When the counter definitions (COUNTER_VERSION) change inside the range, that
commit is reported and the counts are bisected under one definition. Prints the first bad
commit and what changed there. Examples:
  asrbench bisect v1.2 HEAD --run-args "--dataset-config en --limit 4"
  asrbench bisect abc123 def456 --command "python tools/measure.py --out {report}"
Exit status: 0 found, 2 usage or invalid input (not a git repository, an unknown commit, GOOD
not an ancestor of BAD, GOOD and BAD measuring the same), 130 interrupted.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("bisect", help="find the first commit where the counters (or the "
                                      "throughput) changed, with git bisect run",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)
    p.add_argument("good", metavar="GOOD", help="a commit that measures as expected")
    p.add_argument("bad", metavar="BAD", help="a later commit that measures differently")
    p.add_argument("--repo", type=Path, default=Path("."),
                   help="the git repository to bisect (default: the current directory)")
    p.add_argument("--metric", choices=("counters", "throughput"), default="counters",
                   help="what a commit is judged on (default counters)")
    p.add_argument("--run-args", default="", metavar="ARGS",
                   help='options of each `asrbench run`, split like a shell, e.g. '
                        '"--dataset-config en --limit 4" (one option alone: --run-args=--graphs)')
    p.add_argument("--command", dest="measure_command", metavar="CMD",
                   help="measure with this shell command instead of `asrbench run` (counters "
                        "only): it runs in the worktree and must write a report to {report}")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Bisect, print the first bad commit and the changes."""
    try:
        run_args = shlex.split(args.run_args)
    except ValueError as exc:
        raise AsrbenchError(f"--run-args: {exc}") from None
    previous = common.on_signals(hangup=True)  # the worktree goes on SIGHUP too
    try:
        found = bisect(args.repo, args.good, args.bad, metric=args.metric, run_args=run_args,
                       command=args.measure_command,
                       say=lambda message: print(terminal_safe(f"asrbench bisect: {message}"),
                                                 file=sys.stderr))
    except common.Interrupted as exc:
        print(f"asrbench bisect: interrupted ({exc.signal_name})", file=sys.stderr)
        return exc.code
    finally:
        common.restore_signals(previous)
    if found.definitions:
        say(f"definitions: {found.definitions}")
    say(f"first bad commit: {found.sha} {found.subject}")
    say(f"changed: {found.changes}")
    for sha, title, why in found.skipped:
        say(f"skipped (not judged): {sha[:12]} {title}: {why}")
    return 0

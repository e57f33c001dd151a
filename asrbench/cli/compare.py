"""`asrbench compare`: gate a report against the stored baselines."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from asrbench import flow
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.config.options import policy_from
from asrbench.render.doors import could_not_judge_line
from asrbench.render.text import outcome_markdown, outcome_text

HELP = ("Compare a report with baselines/<device class>.json. Each metric gets a verdict "
        "(improved, unchanged, regressed, new, missing); the failure policy (the same as "
        "pytest's) says what fails: a regression, an error rate better than the baseline beyond "
        "tolerance (unless --allow-improvements), changed transcripts (unless --transcripts "
        "warn), a missing entry (unless --allow-missing-baselines). Anything that stops a "
        "config from being judged (an unreadable report or baseline, a missing baseline folder, "
        "a baseline of another model) is a failing \"could not judge\" verdict. Exit status: 0 "
        "pass, 1 fail, 2 usage, invalid input or could not judge.")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare", help="gate a report against stored baselines (exit 0 ok, 1 fail, 2 bad input)",
        description=HELP)
    common.add_report(p, "report to check")
    common.add_baseline_dir(p)
    common.add_markdown(p)
    p.add_argument("--html-url", metavar="URL",
                   help="link the summary to the HTML report uploaded here (`asrbench html`), "
                        "e.g. the workflow run's artifacts page; default $ASRBENCH_HTML_URL")
    common.add_policy(p)
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Verdicts, Markdown summary, exit status for CI (flow.judge_report)."""
    common.refuse_writing_over(args.markdown, "--markdown", args.report)
    outcome = flow.judge_report(args.report, args.baseline_dir, policy_from(args),
                                args.html_url or os.environ.get("ASRBENCH_HTML_URL") or None)
    say(outcome_text(outcome))
    common.publish_markdown(outcome_markdown(outcome), args.markdown)
    line = could_not_judge_line(outcome.not_judged)
    if line is not None:  # also one line on standard error, as every input error of the CLI
        print(line, file=sys.stderr)
    return outcome.exit_code

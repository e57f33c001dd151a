"""The PR gate: a report and the stored baselines in, verdicts out (render/ prints them).

Shared by `asrbench compare`, `asrbench baseline update` and the pytest plugin, so the three
always agree on what a regression is; what fails is the Policy's call (policy.py).

Fail closed: anything that stops a config from being judged (an unreadable or refused baseline,
an invalid report, a missing baseline folder, a set-up error in the pytest door, a selected
config that was never judged) makes a "could not judge: <reason>" item of the outcome
(`not_judged`), which fails the gate in both doors; "no failure" needs every selected config
judged.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.io import DEFAULT_BASELINE_DIR, DEFAULT_REPORT, load_report
from asrbench.formats.merge import refuse_shards
from asrbench.formats.model import BaselineEntry, BaselineFile, Report, Run, Tolerance
from asrbench.gate import baselines
from asrbench.gate.compare import (
    NOT_MEASURED,
    Comparison,
    compare_run,
    missing_entries,
    starved,
)
from asrbench.gate.policy import Policy


def baseline_dir_args(baseline_dir: str | Path | None) -> str:
    """` --baseline-dir DIR` for a command printed as a hint, unless DIR is the default."""
    if baseline_dir is None or Path(baseline_dir) == Path(DEFAULT_BASELINE_DIR):
        return ""
    return f" --baseline-dir {shlex.quote(str(baseline_dir))}"


def refresh_command(config_ids: list[str], report: str | Path = DEFAULT_REPORT,
                    baseline_dir: str | Path | None = None, untimed: bool = False) -> str:
    """The exact command that (re)creates these baseline entries, with the baseline folder the
    user gave (following a hint must never write into another folder). `untimed`: the report
    is a counters-only run's, which measured no throughput and cannot create an entry, so the
    hint says to record from a timed run of the same settings (the command would be refused)."""
    if untimed:
        return (f"a timed run of the same settings (asrbench run without --counters-only), "
                f"then: asrbench baseline update --report <its report>"
                f"{baseline_dir_args(baseline_dir)} --only {' '.join(config_ids)} (a "
                f"counters-only report such as {shlex.quote(str(report))} measured no "
                "throughput to record)")
    return (f"asrbench baseline update --report {shlex.quote(str(report))}"
            f"{baseline_dir_args(baseline_dir)} --only {' '.join(config_ids)}")


def untimed(comparison: Comparison) -> bool:
    """Whether the compared run was a counters-only run (its throughput "not measured")."""
    return any(v.metric == "samples_per_second" and v.note == NOT_MEASURED
               for v in comparison.verdicts)


_REFRESH_PLACEHOLDER = re.compile(r"asrbench baseline update --report <(?:this |new )?report>")


def carry_options(text: str, report: str | Path | None, baseline_dir: str | Path | None) -> str:
    """`text` with each `asrbench baseline update --report <report>` it suggests completed
    with the report judged and the baseline folder read (never a command that would write into
    another folder than the one the user gave)."""
    if report is None:
        return text
    command = (f"asrbench baseline update --report {shlex.quote(str(report))}"
               f"{baseline_dir_args(baseline_dir)}")
    return _REFRESH_PLACEHOLDER.sub(lambda _: command, text)


def with_options(comparison: Comparison, report: str | Path | None,
                 baseline_dir: str | Path | None) -> Comparison:
    """A comparison whose notes' suggested commands carry the options given (carry_options)."""
    verdicts = [v.model_copy(update={"note": carry_options(v.note, report, baseline_dir)})
                for v in comparison.verdicts]
    update: dict[str, Any] = {"verdicts": verdicts}
    if comparison.not_judged:
        update["not_judged"] = carry_options(comparison.not_judged, report, baseline_dir)
    return comparison.model_copy(update=update)


def could_not_judge(config_id: str, reason: str) -> Comparison:
    """A config that could not be judged: no verdicts, the reason, and a failing gate."""
    reason = " ".join(str(reason).split())
    if reason.startswith(f"{config_id}: "):  # the config is named once, where it is shown
        reason = reason[len(config_id) + 2:]
    return Comparison(config_id=config_id, not_judged=reason or "no reason given")


@dataclass
class GateOutcome:
    """Verdicts of every config in a report, judged by one policy, and what to tell the user.

    `problems`: why nothing could be judged at all (an unreadable report, ...); a config that
    could not be judged is a comparison with `not_judged` set. Either fails the gate."""

    comparisons: list[Comparison]
    policy: Policy = field(default_factory=Policy)
    report_path: str = str(DEFAULT_REPORT)  # named in the command that creates entries
    documents: dict[str, Any] = field(default_factory=dict)  # baseline file per device class
    html_url: str | None = None  # where the HTML report was uploaded, linked from the Markdown
    baseline_dir: str | None = None  # the folder the user gave, carried into printed commands
    problems: list[str] = field(default_factory=list)

    @property
    def new_ids(self) -> list[str]:
        """Configs without a baseline entry."""
        return [c.config_id for c in self.comparisons if not c.has_entry and not c.not_judged]

    @property
    def not_judged(self) -> list[tuple[str | None, str]]:
        """(config id or None for the whole input, reason) of everything not judged."""
        return ([(None, p) for p in self.problems]
                + [(c.config_id, c.not_judged) for c in self.comparisons if c.not_judged])

    @property
    def failed(self) -> bool:
        return bool(self.not_judged) or self.policy.fails(self.comparisons)

    @property
    def exit_code(self) -> int:
        """`asrbench compare`'s exit status: 2 when something could not be judged (bad or
        refused input), 1 when the policy fails, 0 when every config was judged and passed."""
        return 2 if self.not_judged else 1 if self.failed else 0

    @property
    def refresh(self) -> str | None:
        """The command that creates the missing entries, or None when none is missing."""
        new = [c for c in self.comparisons if c.config_id in self.new_ids]
        return (refresh_command(self.new_ids, self.report_path, self.baseline_dir,
                                untimed=any(untimed(c) for c in new))
                if self.new_ids else None)


@dataclass
class BaselineUpdate:
    """What update_baselines wrote: per baseline file, (config id, old entry or None, new
    entry) of each entry written; and the runs recorded while the machine was busy (their
    samples/s understate the code)."""

    files: list[tuple[Path, list[tuple[str, BaselineEntry | None, BaselineEntry]]]] = field(
        default_factory=list)
    busy: list[Run] = field(default_factory=list)


def gate_runs(runs: list[Run], baseline_dir: str | Path,
              policy: Policy | None = None, report_path: str | Path = DEFAULT_REPORT
              ) -> GateOutcome:
    """Compare each run with its device class's baseline file (each file read once). A
    baseline file that cannot be read, or an entry that must not be compared (another model's
    weights, another normalizer), makes that config "could not judge", never a pass."""
    documents: dict[str, BaselineFile | None] = {}
    unreadable: dict[str, str] = {}
    comparisons = []
    for run in runs:
        device_class = run.device.class_
        if device_class not in documents and device_class not in unreadable:
            try:
                documents[device_class] = baselines.load_for(baseline_dir, device_class)
            except AsrbenchError as exc:
                unreadable[device_class] = str(exc)
        if device_class in unreadable:
            comparisons.append(could_not_judge(run.config.id, unreadable[device_class]))
            continue
        document = documents[device_class]
        entry = document.entries.get(run.config.id) if document is not None else None
        # The matrix section's policy the pytest door ran with, for limits the entry lacks.
        try:
            comparisons.append(compare_run(run, entry, run.tolerance_policy))
        except AsrbenchError as exc:  # refused: another model, normalizer, counters...
            comparisons.append(could_not_judge(run.config.id, str(exc)))
    comparisons = [with_options(c, report_path, baseline_dir) for c in comparisons]
    return GateOutcome(comparisons, policy or Policy(), str(report_path), documents,
                       baseline_dir=str(baseline_dir))


def refuse_interrupted(report: Report, path: Any) -> None:
    """An interrupted run's report is a record of what finished, not something to gate on."""
    if report.interrupted:
        raise AsrbenchError(f"{path} is the report of an interrupted run ({len(report.runs)} "
                            "run(s) finished): run it again to completion before gating or "
                            "recording baselines")


def check_baseline_dir(baseline_dir: str | Path, report: str | Path | None = None,
                       untimed: bool = False) -> None:
    """Refuse a baseline folder that does not exist (a typo must not make every entry "new",
    which --allow-missing-baselines would pass). `untimed`: the report is a counters-only
    run's (its first entries need a timed run's report)."""
    path = Path(baseline_dir)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        source = "<a timed run's report>" if untimed else (
            shlex.quote(str(report)) if report else "<report>")
        raise AsrbenchError(f"baseline folder {path} {what}: give --baseline-dir the folder of "
                            "<device class>.json files, or record its first entries with "
                            f"`asrbench baseline update --report {source} --baseline-dir "
                            f"{shlex.quote(str(path))}`"
                            + (" (a counters-only run measured no throughput to record)"
                               if untimed else ""))


def gate_report(report: Report, baseline_dir: str | Path, policy: Policy | None = None,
                report_path: str | Path = DEFAULT_REPORT) -> GateOutcome:
    """Gate every run of a report; baseline entries of the same classes with no run are listed.
    Refused (one line): an interrupted report, a shard's, one with an id twice (every door
    that gates comes through here: `compare`, `asrbench html`)."""
    refuse_interrupted(report, report_path)
    refuse_shards(report, report_path, "the gate")
    outcome = gate_runs(report.runs, baseline_dir, policy, report_path)
    run_ids = {r.config.id for r in report.runs}
    for document in outcome.documents.values():
        if document is not None:
            outcome.comparisons += missing_entries(document.entries, run_ids)
    return outcome


def judge_report_file(report_path: str | Path, baseline_dir: str | Path,
                      policy: Policy | None = None) -> GateOutcome:
    """`asrbench compare`'s whole judging: load the report and gate it. Never raises for bad
    input: what stops the judging is a "could not judge" problem of the outcome."""
    policy = policy or Policy()
    try:
        report = load_report(report_path)
        refuse_interrupted(report, report_path)
        refuse_shards(report, report_path, "compare")
        check_baseline_dir(baseline_dir, report_path,
                           untimed=any(r.counters_only for r in report.runs))
        return gate_report(report, baseline_dir, policy, report_path)
    except AsrbenchError as exc:
        return GateOutcome([], policy, str(report_path), baseline_dir=str(baseline_dir),
                           problems=[" ".join(str(exc).split())])


def update_baselines(report: Report | list[Report], baseline_dir: str | Path,
                     only: list[str] | None = None,
                     tolerance: Tolerance | None = None,
                     counters_only: bool = False, check_only: bool = False) -> BaselineUpdate:
    """Rewrite the baseline entries of the report's runs (or only the given ids); what was
    written, for render.text.baseline_update_text. `check_only`: read every file and build
    every entry, raising any refusal, and write nothing.

    Several reports (of the same configs, each from its own process) make one entry per
    config that keeps every process's throughput: the band then comes from the spread between
    processes, which passes inside one process do not see."""
    reports = report if isinstance(report, list) else [report]
    for number, each in enumerate(reports, start=1):
        refuse_interrupted(each, "the report" if len(reports) == 1 else f"report {number}")
    runs = list(reports[0].runs)
    if only:
        known = {r.config.id for r in runs}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise AsrbenchError(f"--only: no run with id {', '.join(unknown)} in the report "
                                f"(it has: {', '.join(sorted(known))})")
        runs = [r for r in runs if r.config.id in only]
    if not runs:
        raise AsrbenchError("the report has no runs to take baselines from")
    groups = []
    for run in runs:
        group = [run]
        for number, other in enumerate(reports[1:], start=2):
            match = [r for r in other.runs if r.config.id == run.config.id]
            if not match:
                raise AsrbenchError(f"report {number} has no run of {run.config.id}: every "
                                    "report must hold the configs recorded")
            if match[0].device.class_ != run.device.class_:
                raise AsrbenchError(f"{run.config.id}: report {number} ran on device class "
                                    f"{match[0].device.class_!r}, report 1 on "
                                    f"{run.device.class_!r}")
            # (the same run in the same environment: a copy of one report, not a process
            # of its own, whose timings never repeat to the last digit)
            mine = (other.environment, match[0].model_dump(exclude={"comparison"}))
            twin = next((k for k, r in enumerate(group, start=1)
                         if (reports[k - 1].environment, r.model_dump(exclude={"comparison"}))
                         == mine), None)
            if twin is not None:  # one process's run twice would narrow the band to nothing
                raise AsrbenchError(f"{run.config.id}: report {number} holds the very run of "
                                    f"report {twin} (the same report twice?): record from "
                                    "reports of separate processes")
            group.append(match[0])
        groups.append(group)
    update = BaselineUpdate()
    by_class = {device_class: [g for g in groups if g[0].device.class_ == device_class]
                for device_class in sorted({r.device.class_ for r in runs})}
    if check_only or len(by_class) > 1:
        # every file read and every entry built before any file is written: a refusal for one
        # device class (its file unreadable, its runs not recordable) leaves them all as they
        # were (the first class's file was rewritten before the second's refusal)
        for device_class, selected in by_class.items():
            baselines.updated(baseline_dir, device_class, selected, reports[0].environment,
                              tolerance, counters_only)
        if check_only:
            return update
    for device_class, selected in by_class.items():
        changes = baselines.update(baseline_dir, device_class, selected, reports[0].environment,
                                   tolerance, counters_only)
        update.files.append((baselines.baseline_path(baseline_dir, device_class), changes))
    if not counters_only:  # a baseline recorded during a slow spell hides regressions
        update.busy = [r for group in groups for r in group
                       if r.timings.contention is not None and starved(r)]
    return update

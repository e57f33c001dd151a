"""The PR gate: a report and the stored baselines in, verdicts and a summary out.

Shared by `asrbench compare`, `asrbench baseline update` and the pytest plugin, so the three
always agree on what a regression is; what fails is the Policy's call (policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asrbench.formats.io import DEFAULT_REPORT
from asrbench.gate import baselines
from asrbench.gate.compare import Comparison, compare_run, missing_entries
from asrbench.errors import AsrbenchError
from asrbench.gate.policy import Policy
from asrbench.formats.model import BaselineFile, Report, Run


def refresh_command(config_ids: list[str], report: str | Path = DEFAULT_REPORT) -> str:
    """The exact command that (re)creates these baseline entries."""
    return f"asrbench baseline update --report {report} --only {' '.join(config_ids)}"


@dataclass
class GateOutcome:
    """Verdicts of every config in a report, judged by one policy, and what to tell the user."""

    comparisons: list[Comparison]
    policy: Policy = field(default_factory=Policy)
    report_path: str = str(DEFAULT_REPORT)  # named in the command that creates entries
    documents: dict[str, Any] = field(default_factory=dict)  # baseline file per device class
    html_url: str | None = None  # where the HTML report was uploaded, linked from the Markdown

    @property
    def new_ids(self) -> list[str]:
        """Configs without a baseline entry."""
        return [c.config_id for c in self.comparisons if not c.has_entry]

    @property
    def failed(self) -> bool:
        return self.policy.fails(self.comparisons)

    @property
    def refresh(self) -> str | None:
        """The command that creates the missing entries, or None when none is missing."""
        return refresh_command(self.new_ids, self.report_path) if self.new_ids else None


def gate_runs(runs: list[Run], baseline_dir: str | Path,
              policy: Policy | None = None, report_path: str | Path = DEFAULT_REPORT
              ) -> GateOutcome:
    """Compare each run with its device class's baseline file (each file read once)."""
    documents: dict[str, BaselineFile | None] = {}
    comparisons = []
    for run in runs:
        device_class = run.device.class_
        if device_class not in documents:
            documents[device_class] = baselines.load_for(baseline_dir, device_class)
        document = documents[device_class]
        entry = document.entries.get(run.config.id) if document is not None else None
        # The matrix section's policy the pytest door ran with, for limits the entry lacks.
        policy_table = run.tolerance_policy.given() if run.tolerance_policy else None
        comparisons.append(compare_run(run, entry, policy_table))
    return GateOutcome(comparisons, policy or Policy(), str(report_path), documents)


def refuse_interrupted(report: Report, path: Any) -> None:
    """An interrupted run's report is a record of what finished, not something to gate on."""
    if report.interrupted:
        raise AsrbenchError(f"{path} is the report of an interrupted run ({len(report.runs)} "
                            "run(s) finished): run it again to completion before gating or "
                            "recording baselines")


def gate_report(report: Report, baseline_dir: str | Path, policy: Policy | None = None,
                report_path: str | Path = DEFAULT_REPORT) -> GateOutcome:
    """Gate every run of a report; baseline entries of the same classes with no run are listed."""
    refuse_interrupted(report, report_path)
    outcome = gate_runs(report.runs, baseline_dir, policy, report_path)
    run_ids = {r.config.id for r in report.runs}
    for document in outcome.documents.values():
        if document is not None:
            outcome.comparisons += missing_entries(document.entries, run_ids)
    return outcome


def update_baselines(report: Report | list[Report], baseline_dir: str | Path,
                     only: list[str] | None = None,
                     tolerance: dict[str, float] | None = None,
                     counters_only: bool = False) -> str:
    """Rewrite the baseline entries of the report's runs (or only the given ids).

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
            group.append(match[0])
        groups.append(group)
    tables = []
    for device_class in sorted({r.device.class_ for r in runs}):
        selected = [g for g in groups if g[0].device.class_ == device_class]
        changes = baselines.update(baseline_dir, device_class, selected, reports[0].environment,
                                   tolerance, counters_only)
        tables.append(f"updated {baselines.baseline_path(baseline_dir, device_class)}:\n"
                      + baselines.change_table(changes))
    return "\n".join(tables)

"""The PR gate: a report and the stored baselines in, verdicts and a summary out.

Shared by `asrbench compare`, `asrbench baseline update` and the pytest plugin, so the three
always agree on what a regression is; what fails is the Policy's call (policy.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asrbench import baselines
from asrbench.compare import Comparison, compare_run, missing_entries
from asrbench.errors import AsrbenchError
from asrbench.policy import Policy
from asrbench.render import gate_text, markdown_summary


def refresh_command(config_ids: list[str], report: str = "reports/latest.json") -> str:
    """The exact command that (re)creates these baseline entries."""
    return f"asrbench baseline update --report {report} --only {' '.join(config_ids)}"


@dataclass
class GateOutcome:
    """Verdicts of every config in a report, judged by one policy, and what to tell the user."""

    comparisons: list[Comparison]
    policy: Policy = field(default_factory=Policy)
    report_path: str = "reports/latest.json"  # named in the command that creates entries
    documents: dict[str, Any] = field(default_factory=dict)  # baseline file per device class

    @property
    def new_ids(self) -> list[str]:
        """Configs without a baseline entry."""
        return [c.config_id for c in self.comparisons if not c.has_entry]

    @property
    def failed(self) -> bool:
        return self.policy.fails(self.comparisons)

    def _refresh(self) -> str | None:
        return refresh_command(self.new_ids, self.report_path) if self.new_ids else None

    @property
    def markdown(self) -> str:
        return markdown_summary(self.comparisons, self.policy, self._refresh())

    @property
    def text(self) -> str:
        return gate_text(self.comparisons, self.policy, self._refresh())

    def append_step_summary(self) -> None:
        """Append the Markdown summary to GitHub's step summary when running in Actions."""
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(self.markdown)


def gate_runs(runs: list[dict[str, Any]], baseline_dir: str | Path, policy: Policy | None = None,
              report_path: str | Path = "reports/latest.json") -> GateOutcome:
    """Compare each run with its device class's baseline file."""
    documents: dict[str, dict[str, Any] | None] = {}
    comparisons = []
    for run in runs:
        device_class = run["device"]["class"]
        if device_class not in documents:
            documents[device_class] = baselines.load_for(baseline_dir, device_class)
        document = documents[device_class]
        entry = (document or {}).get("entries", {}).get(run["config"]["id"])
        # The matrix section's policy the pytest door ran with, for configs without an entry.
        comparisons.append(compare_run(run, entry, run.get("tolerance_policy")))
    return GateOutcome(comparisons, policy or Policy(), str(report_path), documents)


def gate_report(report: dict[str, Any], baseline_dir: str | Path, policy: Policy | None = None,
                report_path: str | Path = "reports/latest.json") -> GateOutcome:
    """Gate every run of a report; baseline entries of the same classes with no run are listed."""
    outcome = gate_runs(report["runs"], baseline_dir, policy, report_path)
    run_ids = {r["config"]["id"] for r in report["runs"]}
    for document in outcome.documents.values():
        if document:
            outcome.comparisons += missing_entries(document["entries"], run_ids)
    return outcome


def update_baselines(report: dict[str, Any], baseline_dir: str | Path, only: list[str] | None = None,
                     tolerance: dict[str, float] | None = None) -> str:
    """Rewrite the baseline entries of the report's runs (or only the given ids)."""
    runs = report["runs"]
    if only:
        known = {r["config"]["id"] for r in runs}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise AsrbenchError(f"--only: no run with id {', '.join(unknown)} in the report "
                                f"(it has: {', '.join(sorted(known))})")
        runs = [r for r in runs if r["config"]["id"] in only]
    if not runs:
        raise AsrbenchError("the report has no runs to take baselines from")
    tables = []
    for device_class in sorted({r["device"]["class"] for r in runs}):
        selected = [r for r in runs if r["device"]["class"] == device_class]
        changes = baselines.update(baseline_dir, device_class, selected, report["environment"], tolerance)
        tables.append(f"updated {baselines.baseline_path(baseline_dir, device_class)}:\n"
                      + baselines.change_table(changes))
    return "\n".join(tables)

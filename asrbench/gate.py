"""The PR gate: a report and the stored baselines in, verdicts and a summary out.

Shared by `asrbench compare`, `asrbench baseline update` and the pytest plugin, so the three
always agree on what a regression is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asrbench import baselines
from asrbench.compare import Comparison, compare_run, missing_entries
from asrbench.errors import AsrbenchError
from asrbench.report import markdown_summary


def refresh_command(config_ids: list[str], report: str = "reports/latest.json") -> str:
    """The exact command that (re)creates these baseline entries."""
    return f"asrbench baseline update --report {report} --only {' '.join(config_ids)}"


@dataclass
class GateOutcome:
    """Verdicts of every config in a report, and what to tell the user."""

    comparisons: list[Comparison]
    new_ids: list[str] = field(default_factory=list)  # configs without a baseline entry
    allow_missing: bool = False
    report_path: str = "reports/latest.json"  # named in the command that creates entries

    @property
    def failed(self) -> bool:
        return any(c.regressed for c in self.comparisons) or (bool(self.new_ids) and not self.allow_missing)

    @property
    def markdown(self) -> str:
        text = markdown_summary(self.comparisons)
        if self.new_ids:
            text += ("\n" + ("No baseline entry yet" if self.allow_missing else "❌ **Missing baseline entries**")
                     + f" for {len(self.new_ids)} config(s); create them with:\n\n"
                     f"```\n{refresh_command(self.new_ids, self.report_path)}\n```\n")
        return text

    @property
    def text(self) -> str:
        lines = []
        for c in self.comparisons:
            for v in c.verdicts:
                value = "-" if v.value is None else f"{v.value:.4f}"
                base = "-" if v.baseline is None else f"{v.baseline:.4f}"
                delta = "" if v.delta is None else f" ({v.delta:+.4f}, allowed ±{v.allowed:.4f})"
                lines.append(f"{v.verdict.upper():<10} {c.config_id} {v.metric}: {base} -> {value}{delta}"
                             + (f"  [{v.note}]" if v.note else ""))
            if c.transcripts:
                lines.append(f"CHANGED    {c.config_id}: {len(c.transcripts)} transcript(s)")
                lines += [f"           {t.id}: {t.diff}" for t in c.transcripts[:10]]
        if self.new_ids:
            lines.append(f"{'NOTE' if self.allow_missing else 'MISSING'}    no baseline entry for "
                         f"{', '.join(self.new_ids)}; create with: {refresh_command(self.new_ids, self.report_path)}")
        lines.append("result: " + ("FAIL" if self.failed else "ok"))
        return "\n".join(lines)

    def append_step_summary(self) -> None:
        """Append the Markdown summary to GitHub's step summary when running in Actions."""
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(self.markdown)


def gate_runs(runs: list[dict[str, Any]], baseline_dir: str | Path, allow_missing: bool = False,
              report_path: str | Path = "reports/latest.json") -> GateOutcome:
    """Compare each run with its device class's baseline file."""
    documents: dict[str, dict[str, Any] | None] = {}
    comparisons, new_ids = [], []
    for run in runs:
        device_class = run["device"]["class"]
        if device_class not in documents:
            documents[device_class] = baselines.load_for(baseline_dir, device_class)
        document = documents[device_class]
        entry = (document or {}).get("entries", {}).get(run["config"]["id"])
        if entry is None:
            new_ids.append(run["config"]["id"])
        # The matrix section's policy the pytest door ran with, for configs without an entry.
        comparisons.append(compare_run(run, entry, run.get("tolerance_policy")))
    return GateOutcome(comparisons, new_ids, allow_missing, str(report_path))


def gate_report(report: dict[str, Any], baseline_dir: str | Path, allow_missing: bool = False,
                report_path: str | Path = "reports/latest.json") -> GateOutcome:
    """Gate every run of a report; baseline entries of the same classes with no run are listed."""
    outcome = gate_runs(report["runs"], baseline_dir, allow_missing, report_path)
    run_ids = {r["config"]["id"] for r in report["runs"]}
    for device_class in {r["device"]["class"] for r in report["runs"]}:
        document = baselines.load_for(baseline_dir, device_class)
        if document:
            outcome.comparisons += missing_entries(document["entries"], run_ids, None)
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

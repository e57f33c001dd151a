"""The history's text: `asrbench history add|list|show|changes` as the terminal shows them.

history/ returns data (StoredReport, Point, ChangePoint, AddedReport); the lines are made here.
Everything in them that comes from the store (config ids, device classes, commits, branches,
paths) can hold control characters: each line goes through terminal_safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from asrbench.history.changepoints import METRICS, ChangePoint
from asrbench.history.store import AddedReport, Point, StoredReport
from asrbench.render.text import terminal_safe


def _line(text: str) -> str:
    return terminal_safe(text, newlines=False)


def change_line(change: ChangePoint) -> str:
    """One persistent step: direction, config, metric, medians before -> after, size, and the
    report it starts at (not escaped: changes_text escapes it)."""
    name, _, _, relative_scale = METRICS[change.metric]
    size = (f"{change.relative:+.1%}" if relative_scale and change.relative is not None
            else f"{change.delta:+.4f}")
    fmt = "{:.4g}" if relative_scale else "{:.4f}"
    return (f"{change.direction.upper():<11} {change.config_id} [{change.device_class}] {name}: "
            f"{fmt.format(change.before)} -> {fmt.format(change.after)} ({size}) from "
            f"{change.label} ({change.points_before} run(s) before, {change.points_after} after)")


def changes_text(changes: list[ChangePoint], series_count: int) -> str:
    """The terminal output of `asrbench history changes`."""
    if not changes:
        return f"no persistent step in {series_count} series"
    # config ids, device classes and commits come from the store: escaped for the terminal
    lines = [_line(change_line(c)) for c in changes]
    regressions = sum(c.direction == "regression" for c in changes)
    lines.append(f"{len(changes)} step(s) in {series_count} series, {regressions} regression(s)")
    return "\n".join(lines)


def added_line(added: AddedReport) -> str:
    """`asrbench history add`'s one line: where the report went, under which id and commit."""
    stored = added.stored
    commit_text = f"commit {stored.commit[:12]}" if stored.commit else "no commit (use --commit)"
    return _line(f"added {added.path} to history {added.history} as #{stored.id} ({commit_text}, "
                 f"{stored.runs} run(s), device class {stored.device_class or '-'})")


def row_table(rows: Sequence[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the header; every cell on one
    line, control characters shown escaped (a branch or date from a report is data: its
    newline made a row of its own)."""
    rows = [tuple(_line(cell) for cell in row) for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def reports_table(stored: Sequence[StoredReport]) -> str:
    """`asrbench history list`'s table: one row per stored report."""
    rows = [("id", "commit", "branch", "device class", "runs", "created", "added")]
    rows += [(f"#{s.id}", (s.commit or "-")[:12] + ("*" if s.dirty else ""), s.branch or "-",
              s.device_class or "-", str(s.runs), s.created or "-", s.added) for s in stored]
    return row_table(rows)


def report_lines(stored: StoredReport) -> list[str]:
    """`asrbench history show`'s heading: the report's commit, branch, device class, dates."""
    return [_line(line) for line in (
            f"report {stored.label}: commit {stored.commit or '-'}"
            + (f" (the report says {stored.report_commit})"
               if stored.report_commit and stored.report_commit != stored.commit else "")
            + (", with local changes" if stored.dirty else ""),
            f"branch {stored.branch or '-'}, device class {stored.device_class or '-'}, created "
            f"{stored.created or '-'}, added {stored.added} from {stored.source or '-'}")]


def runs_table(points: Sequence[Point]) -> str:
    """`asrbench history show`'s table: one row per run of the report."""
    rows = [("config", "WER", "WER norm", "CER", "samples/s", "RSD", "passes", "compilations")]
    for p in points:
        rows.append((p.config_id, f"{p.wer:.4f}",
                     "-" if p.wer_normalized is None else f"{p.wer_normalized:.4f}",
                     f"{p.cer:.4f}", f"{p.samples_per_second:.4g}", f"{p.rsd:.1%}",
                     str(p.passes), "-" if p.compilations_timed is None
                     else str(p.compilations_timed)))
    return row_table(rows)

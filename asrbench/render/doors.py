"""The text the two front doors print around the flow's steps (asrbench/flow.py): `asrbench
run`'s summary, its report and interruption lines and what to run next, and the pytest door's
end-of-session lines. The doors only print what these return; everything from data is made
terminal-safe where the door printed it so before.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from shlex import join, quote
from typing import TYPE_CHECKING

from asrbench.formats.model import Run
from asrbench.formats.redact import redact
from asrbench.render.history import added_line
from asrbench.render.text import (
    accuracy_lines,
    baseline_update_text,
    finding_text,
    run_notes,
    summary_table,
    terminal_safe,
)

if TYPE_CHECKING:  # pragma: no cover  (the flow is a layer above: its types only)
    from asrbench.flow import Finished, Measured, Written
    from asrbench.gate.compare import Comparison
    from asrbench.gate.policy import Finding


# -- asrbench run ---------------------------------------------------------------------------------

def shard_line(label: str, source: str) -> str:
    """What a shard of each split says before it runs."""
    return (f"asrbench: {label} of each split ({source}); merge the shards' reports with "
            "`asrbench merge`")


def not_written_line(written: Written) -> str:
    """The report could not be written where asked: where it went instead."""
    return (f"asrbench: could not write {written.wanted} ({written.error}); the report was saved "
            f"to {written.path}")


def interrupted_line(measured: Measured, written: Written | None,
                     wanted: Path | None = None) -> str:
    """A run stopped by a signal or a later config's error: how many runs finished, and where
    they are (`written` None: none finished, nothing was written over `wanted`)."""
    interrupted = measured.interrupted
    name = interrupted.signal if interrupted is not None else "?"
    head = (f"asrbench: error: {interrupted.error}; stopped"
            if interrupted is not None and interrupted.error else
            f"asrbench: interrupted ({name})")
    if written is None:
        line = (f"{head} after 0 of {measured.planned} run(s); no report written "
                f"({wanted} is left as it was)")
    else:
        line = (f"{head} after {len(measured.runs)} of {measured.planned} "
                f"run(s); the finished runs are in {written.path}, marked interrupted")
    return terminal_safe(redact(line), newlines=False)


def run_summary(runs: list[Run], *, transcripts: bool = False, ranks: int = 1,
                launcher: str | None = None) -> list[str]:
    """`asrbench run`'s summary: the table, its notes, every transcript when asked, skipped
    rows, passes that disagreed, and how a data-parallel run's samples/s are counted (an item
    may span lines: the table)."""
    lines = [summary_table(runs), *run_notes(runs)]
    if transcripts:
        lines += [f"{run.config.id}\t{u.id}\t{u.prediction}" for run in runs
                  for u in run.utterances]
    for run in runs:
        skipped = run.dataset.skipped
        if skipped:
            lines.append(f"{run.config.id}: {len(skipped)} row(s) skipped (listed in the report), "
                         f"e.g. {skipped[0].id}: {skipped[0].reason}")
        if not run.passes_identical:
            lines.append(f"{run.config.id}: WARNING transcripts differed between timed passes")
    if ranks > 1:
        lines.append(f"{ranks} ranks ({launcher}): samples/s = all utterances / the slowest "
                     "rank's pass time; per-rank timings are in the report")
    return lines


def written_line(path: Path) -> str:
    return f"report written to {path}"


def what_next(report: Path) -> str:
    """The commands that usually follow a run, on this report."""
    path, html = quote(str(report)), quote(str(report.with_suffix(".html")))
    steps = [(f"asrbench compare --report {path}", "gate it against the stored baselines"),
             (f"asrbench baseline update --report {path}",
              "refresh the baselines from it, on purpose"),
             (f"asrbench html --report {path} --out {html}", "trend charts and verdicts as HTML")]
    width = max(len(command) for command, _ in steps)
    return "\n".join(["next:"] + [f"  {command.ljust(width)}  # {why}" for command, why in steps])


#: what a shard's run suggests next
MERGE_NEXT = ("next: asrbench merge <every shard's report> --report <merged report>  "
              "# then compare it")


# -- asrbench compare ----------------------------------------------------------------------------

def could_not_judge_line(not_judged: list[tuple[str | None, str]]) -> str | None:
    """`asrbench compare`'s one line on standard error when it could not judge something (as
    every input error of the CLI): the first reason, and how many more; None when all were
    judged."""
    if not not_judged:
        return None
    where, reason = not_judged[0]
    if where and not reason.startswith(where):
        reason = f"{where}: {reason}"
    more = f" (and {len(not_judged) - 1} more: see above)" if len(not_judged) > 1 else ""
    return terminal_safe(f"asrbench: error: could not judge: {reason}{more}", newlines=False)


# -- the pytest door ------------------------------------------------------------------------------

def finished_lines(done: Finished, judged: str | None = None) -> list[str]:
    """What the end of a pytest session says (flow.finish's data), one terminal-safe line
    each (the baseline update's change table excepted): where the report and summary went,
    every config that could not be judged, the baselines and history refreshed. `judged`: the
    report judged with --asrbench-from-report."""
    lines = []
    written, summary = done.written, done.markdown
    marked = ", marked interrupted (the session was interrupted)" if done.interrupted else ""
    if written is not None and written.elsewhere:
        lines.append(f"{not_written_line(written)}{marked}")
    elif written is not None:
        lines.append(f"asrbench: report written to {written.path}{marked} (summary: {summary})")
    elif summary is not None:
        left = (f"; {done.wanted} is an earlier session's, left as it was"
                if done.wanted is not None and done.wanted.exists() else "")
        lines.append(f"asrbench: no config ran, no report written (summary: {summary}{left})")
    else:
        lines.append(f"asrbench: judged {judged}; nothing written over it or reports/latest.* "
                     "(--asrbench-report PATH writes this session's report and summary)")
    if done.markdown_error:
        lines.append(f"asrbench: {done.markdown_error}")
    lines += not_judged_lines(done.outcome.not_judged, len(done.outcome.comparisons))
    if done.baselines is not None and done.baselines.update is not None:
        lines.append(f"asrbench: {baseline_update_text(done.baselines.update)}")
    elif done.baselines is not None:
        lines.append(f"asrbench: baselines not updated: {done.baselines.error}")
    if done.history is not None and done.history.added is not None:
        lines.append(f"asrbench: {added_line(done.history.added)}")
    elif done.history is not None:
        lines.append(f"asrbench: history not updated: {done.history.error}")
    return [terminal_safe(line) for line in lines]


def not_judged_lines(not_judged: Iterable[tuple[str | None, str]], configs: int) -> list[str]:
    """Each config the session could not judge, then the failing result, if any."""
    lines = [redact(f"asrbench: could not judge {config_id}: {reason}")
             for config_id, reason in not_judged]
    if lines:
        lines.append(f"asrbench: result: FAIL: could not judge {len(lines)} of {configs} "
                     "config(s)")
    return lines


def _line(text: str) -> str:
    """One line from data, fit for the terminal."""
    return terminal_safe(text, newlines=False)


def missing_entry_line(config_id: str, path: Path, selection: list[str], refresh: str,
                       untimed: bool = False) -> str:
    """A selected config with no baseline entry: the pytest command (the session's own
    selection) and the `asrbench baseline update` command that create it; a counters-only
    session's (`untimed`) cannot: its selection without the counting mode can."""
    if untimed:
        timed = [a for a in selection if a not in ("--asrbench-counters-only", "--counters-only")]
        return _line(f"no baseline entry for {config_id} in {path}; a counters-only run "
                     "measured no throughput to create it from: record it from a timed run, "
                     f"pytest {join(timed or ['benchmarks'])} --asrbench-update-baselines   "
                     f"(or: {refresh})")
    return _line(f"no baseline entry for {config_id} in {path}; create it with: pytest "
                 f"{join(selection)} --asrbench-update-baselines   (or: {refresh})")


def policy_texts(findings: Iterable[Finding], detail: str = "") -> tuple[str | None, str | None]:
    """What a pytest check says for the policy's findings: the failure (each failing finding
    on its own line) and the warning (the warning findings joined by "; "), each followed by
    `detail` when there is one; None where there is nothing to say. Findings name ops, ids and
    transcripts from data: no escape sequence reaches the terminal, one finding stays one
    line."""
    failing: list[str] = []
    warning: list[str] = []
    for finding in findings:
        (failing if finding.fails else warning).append(_line(finding_text(finding)))
    detail = "\n".join(_line(line) for line in detail.split("\n")) if detail else ""
    tail = f"\n{detail}" if detail else ""
    return (("\n".join(failing) + tail) if failing else None,
            ("; ".join(warning) + tail) if warning else None)


def change_listing(comparison: Comparison, limit: int = 50) -> str:
    """What a failing accuracy test prints when transcripts changed: each error rate's change
    with its paired-bootstrap interval and utterances worse/better, then the word diffs."""
    if not comparison.transcripts:
        return ""
    lines = [f"  {line}" for line in accuracy_lines(comparison)]
    lines += [f"  {c.id}: {c.diff}" for c in comparison.transcripts[:limit]]
    return "\n".join(lines)

"""Rendering, and nothing else: the one-line verdict, the plain-text tables, the Markdown summary.

Statistics never print and rendering never measures (STYLE.md). The Markdown is posted to pull
requests and to GitHub's step summary, so everything in it that comes from data (config ids,
utterance ids, transcripts, references, notes) goes through `escape_md`: no HTML, no table
breaks, no @-mentions, no code-span breaks, no new lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asrbench.ab.rounds import RECIPE_VARIABLE
from asrbench.errors import AsrbenchError
from asrbench.formats.io import write_text_atomic
from asrbench.formats.redact import redact_command, redact_link
from asrbench.gate.accuracy import CONFIDENCE
from asrbench.gate.baselines import GATED_METRICS, ONE_PROCESS_REL, RECOMMENDED_PROCESSES
from asrbench.gate.compare import COUNTED_METRICS, ONE_SIDED, describe_contention, starved
from asrbench.gate.counters import (
    UNSTABLE,
    counter_verdicts,
    counts_summary,
    describe_changes,
    refusal,
)

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.ab.rounds import Outcome
    from asrbench.ab.run import AbResult
    from asrbench.formats.model import (
        AccuracyChange,
        BaselineEntry,
        ErrorRateChange,
        Run,
        Verdict,
    )
    from asrbench.gate.compare import Comparison
    from asrbench.gate.outcome import BaselineUpdate, GateOutcome
    from asrbench.gate.policy import Finding, Policy

ZERO_WIDTH_SPACE = "\u200b"
ARROWS = {"improved": "✅ improved", "unchanged": "➖ unchanged", "regressed": "❌ regressed",
          "new": "🆕 new", "missing": "⚠️ missing", "not-judged": "⏸️ not judged"}


#: characters from data that could make markup, and what they become (one pass, so no entity
#: is escaped twice). Emphasis characters (* _) only style text and are left alone.
_MD_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "\\": "&#92;",
    "|": "&#124;", "`": "&#96;", "[": "&#91;", "]": "&#93;", "@": "@" + ZERO_WIDTH_SPACE,
})


def escape_md(text: Any) -> str:
    """Text from data, safe inside GitHub Markdown (a table cell, a heading, a list item).

    HTML is escaped (`<img>`, `</details>`, `<script>` show as text), `|` cannot end a table
    cell, a backtick cannot open a code span, `@name` cannot mention anyone (a zero-width space
    follows the @), `[`/`]` cannot make a link, nor can a bare `http://...` or `www.` address,
    line breaks cannot start a new block, and control characters and bidi overrides show as
    escapes (terminal_safe: the file may be printed in a CI log, and an override would
    re-order what the summary shows).
    """
    one_line = " ".join(str(text).split())  # line breaks and other white space: one space
    escaped = terminal_safe(one_line).translate(_MD_ESCAPES)
    # a bare URL or www. address from data is not made a link (GitHub autolinks them): a
    # zero-width space after the scheme's colon or the www, as after an @
    return _AUTOLINK.sub(lambda m: m.group(1) + ZERO_WIDTH_SPACE + m.group(2), escaped)


#: what GitHub's autolinking starts at: a scheme's "://" or "www."
_AUTOLINK = re.compile(r"(:|\bwww)(//|\.)", re.IGNORECASE)


#: C0 controls but tab and newline, DEL, C1 controls, and the Unicode line/paragraph separators
#: and bidirectional overrides that re-order what a terminal or log viewer shows
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
                              "\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: Any, newlines: bool = True) -> str:
    """Text from data, safe to print to a terminal or a CI log: control characters (an ANSI
    escape sequence's ESC, a carriage return that overwrites the line, C1 controls, bidi
    overrides) are shown as escapes (\\x1b, \\x0d, \\u202e); tab stays, and new lines
    stay unless `newlines` is False (one line of output that must stay one line)."""
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    safe = _TERMINAL_UNSAFE.sub(escape, str(text))
    return safe if newlines else safe.replace("\n", "\\x0a")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


#: throughput spread between passes above which the run summary warns of a noisy machine
NOISY_RSD = 0.10


def _rate(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rsd(run: Run) -> str:
    """The passes' spread as a percentage; n/a with a single timed pass (nothing to spread)."""
    if run.throughput is None or len(run.throughput.samples_per_second_per_pass) < 2:
        return "n/a"
    return f"{run.throughput.samples_per_second_rsd * 100:.1f}%"


def summary_table(runs: Iterable[Run]) -> str:
    """Plain-text table of the headline numbers, one row per run."""
    rows: list[tuple[str, ...]] = [
        ("run", "utts", "skip", "WER", "WER norm", "CER", "samples/s", "RSD", "RTFx", "tok/s")]
    for r in runs:
        m = r.metrics
        rows.append((r.config.id, str(len(r.utterances)), str(len(r.dataset.skipped)),
                     f"{m.wer:.4f}", _rate(m.wer_normalized, 4), f"{m.cer:.4f}",
                     "not measured" if m.samples_per_second is None
                     else f"{m.samples_per_second:.3f}", _rsd(r),
                     _rate(m.rtfx, 2), _rate(m.tokens_per_second, 1)))
    return _table(rows)


def run_notes(runs: Iterable[Run]) -> list[str]:
    """Lines under the summary: emulated devices, a noisy machine, compilations in timed
    passes, agreement with the stock reference."""
    lines = []
    for r in runs:
        if r.device.class_ == "hpu-emulated":
            lines.append(f"{r.config.id}: EMULATED Gaudi on the CPU: transcripts and graph "
                         "behaviour are the point; samples/s measure the emulator, not a Gaudi")
        if r.counters_only:
            lines.append(f"{r.config.id}: counters-only: throughput: not measured "
                         "(--counters-only); counters, transcripts and error rates are gated")
        rsd = r.throughput.samples_per_second_rsd if r.throughput is not None else 0.0
        if r.throughput is not None and len(r.throughput.samples_per_second_per_pass) > 1 \
                and rsd > NOISY_RSD:
            lines.append(f"{r.config.id}: WARNING noisy machine: samples/s varied "
                         f"{rsd * 100:.0f}% between passes; numbers are less trustworthy")
        if r.timings.contention is not None and starved(r):
            # the spread between passes cannot see a machine that was busy in every pass
            lines.append(f"{r.config.id}: WARNING busy machine: "
                         f"{describe_contention(r.timings.contention)} during the timed "
                         "passes; its samples/s are not judged against a baseline")
        compilations = r.timings.compilations
        if compilations is not None:
            during = sum(compilations.passes)
            lines.append(f"{r.config.id}: graph compilations: warm-up {compilations.warmup}, "
                         f"timed passes {compilations.passes}"
                         + ("  <- RECOMPILED while timed" if during else ""))
        reference = r.reference
        if reference is not None and reference.error:
            lines.append(f"{r.config.id}: agreement with the stock reference UNKNOWN: "
                         f"{reference.error}")
        elif reference is not None:
            lines.append(f"{r.config.id}: agreement with {reference.reference}: "
                         f"{reference.identical}/{reference.utterances} transcripts "
                         f"identical, WER vs reference {reference.wer:.4f}")
    return lines


def describe_change(change: ErrorRateChange, confidence: float = CONFIDENCE) -> str:
    """e.g. "WER +0.021 (95% CI +0.004 .. +0.038), 5 utterances worse, 1 better"; without an
    interval "WER +0.125 (no interval), 1 utterance worse, 0 better"."""
    name = {"wer": "WER", "wer_normalized": "normalized WER", "cer": "CER"}.get(change.metric,
                                                                                change.metric)
    moved = (f"{change.worse} utterance{'s' * (change.worse != 1)} worse, "
             f"{change.better} better")
    if change.low is None or change.high is None:
        return f"{name} {change.delta:+.3f} (no interval), {moved}"
    return (f"{name} {change.delta:+.3f} ({confidence:.0%} CI {change.low:+.3f} .. "
            f"{change.high:+.3f}), {moved}" + ("" if change.significant else ": not significant"))


def method_text(accuracy: AccuracyChange) -> str:
    """How the intervals were made, in words, e.g. "paired bootstrap over 12 speakers (40
    utterances)"."""
    units = accuracy.units if accuracy.units is not None else accuracy.utterances
    if accuracy.method == "speakers":
        text = (f"paired bootstrap over {units} speaker{'s' * (units != 1)} "
                f"({accuracy.utterances} utterances)")
    else:
        text = f"paired bootstrap over {units} utterance{'s' * (units != 1)}"
    if accuracy.changes and all(c.low is None for c in accuracy.changes):
        # the changes are of the utterances scored on both sides, which the error-rate
        # verdicts (all of each side's utterances) may not be: say which
        text = (f"no paired bootstrap; over the {accuracy.utterances} utterance"
                f"{'s' * (accuracy.utterances != 1)} scored on both sides")
    return text + (f"; {accuracy.note}" if accuracy.note else "")


def accuracy_lines(comparison: Comparison) -> list[str]:
    """One line per error rate: its change, confidence interval, utterances worse and better;
    or why there is no interval."""
    accuracy = comparison.accuracy
    if accuracy is None:
        return ["no interval of the error-rate changes: the baseline entry (or the report) has "
                "no per-utterance edit counts; refresh the entry to get one"]
    return [describe_change(change, accuracy.confidence)
            + f" ({method_text(accuracy)})" * (i == 0)
            for i, change in enumerate(accuracy.changes)]


# -- numbers and verdicts, as every table and finding prints them ---------------------------------

def _is_count(metric: str) -> bool:
    return metric in COUNTED_METRICS or metric == "counters" or metric.startswith("counters.")


def format_number(value: float | None, metric: str = "") -> str:
    """A metric value as the tables print it (samples/s to 4 significant digits, counts as
    integers, error rates to 4 decimals)."""
    if value is None:
        return "-"
    if _is_count(metric):
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"
    return f"{value:.4g}" if metric == "samples_per_second" else f"{value:.4f}"


def format_delta(value: float, metric: str = "") -> str:
    """A signed change, in the metric's own format (+2 for a count, +0.0125 for a rate)."""
    if _is_count(metric):
        return f"{value:+.0f}" if float(value).is_integer() else f"{value:+.4g}"
    return f"{value:+.4g}" if metric == "samples_per_second" else f"{value:+.4f}"


def format_allowed(allowed: float | None, metric: str = "") -> str:
    """The allowed move: "exact" for counts, "-X" for a one-sided band (a drop of up to X
    passes; a rise never fails), "±X" for a two-sided one."""
    if allowed is None:
        return "-"
    if _is_count(metric) and allowed == 0:
        return "exact"
    sign = "-" if metric in ONE_SIDED else "±"
    return f"{sign}{format_number(allowed, metric)}"


def describe_verdict(verdict: Verdict) -> str:
    """One line: metric, baseline -> current, delta, allowed band, verdict and note."""
    metric = verdict.metric
    delta = "" if verdict.delta is None else f" (delta {format_delta(verdict.delta, metric)}"
    if delta:
        delta += ")" if verdict.allowed is None else \
            f", allowed {format_allowed(verdict.allowed, metric)})"
    values = ("" if verdict.value is None and verdict.baseline is None else
              f" baseline {format_number(verdict.baseline, metric)} -> "
              f"{format_number(verdict.value, metric)}{delta}")
    return (f"{metric}:{values} {verdict.verdict.upper()}"
            + (f" [{verdict.note}]" if verdict.note else ""))


#: appended to a failing throughput regression: what to do when the runner, not the code, is slow
THROUGHPUT_HINT = ("; throughput alone: if the runner was busy or its speed differs between "
                   "processes, gate with --throughput warn (the counters still judge the work) "
                   "or measure the change with `asrbench ab`")


def finding_text(finding: Finding) -> str:
    """What a policy finding says, in one line (the pytest door fails or warns a test with it;
    `asrbench compare` and the Markdown list it)."""
    if finding.not_judged is not None:
        return f"could not judge: {finding.not_judged}"
    if finding.check == "transcripts":
        return f"{finding.transcripts} transcript(s) differ from the baseline"
    verdict = finding.verdict
    if verdict is None:
        return "no baseline entry"
    interval = finding.interval
    noise = ("" if interval is None else
             f"; not significant: {interval.confidence:.0%} CI {interval.low:+.4f} .. "
             f"{interval.high:+.4f} includes 0 (--wer-significance)")
    if verdict.verdict == "regressed":
        hint = THROUGHPUT_HINT if finding.check == "throughput" and not finding.warn_only else ""
        return (describe_verdict(verdict) + noise
                + (" (--throughput warn: a warning)" if finding.warn_only else "") + hint)
    if verdict.verdict == "improved":
        return (describe_verdict(verdict) + " (better than the baseline: refresh it if intended)"
                + noise)
    return describe_verdict(verdict)


def _not_run(comparison: Comparison) -> bool:
    """A baseline entry the report has no run of (e.g. the 2-rank entries a default run never
    makes): one line, not a table of MISSING metrics."""
    return bool(comparison.verdicts) and all(v.verdict == "missing" for v in comparison.verdicts)


def _values(v: Any) -> str:
    """` baseline -> current (delta, allowed band)`, or "" where neither side has a number (a
    check that was not made, e.g. counters of a --no-counters run: nothing to show)."""
    if v.value is None and v.baseline is None:
        return ""
    delta = "" if v.delta is None else f" ({format_delta(v.delta, v.metric)}" + (
        ")" if v.allowed is None else f", allowed {format_allowed(v.allowed, v.metric)})")
    return f" {format_number(v.baseline, v.metric)} -> {format_number(v.value, v.metric)}{delta}"


def _label(v: Verdict) -> str:
    """The terminal's verdict word; a check that was not made says so (SKIPPED), not
    UNCHANGED."""
    if v.value is None and v.baseline is None and v.verdict == "unchanged":
        return "SKIPPED"
    return v.verdict.upper()


def gate_text(comparisons: list[Comparison], policy: Policy, refresh: str | None,
              problems: Iterable[str] = ()) -> str:
    """The terminal output of `asrbench compare`: every verdict, changed transcripts, what
    fails or warns under the policy, what could not be judged, and the result."""
    lines = []
    problems = list(problems)
    for c in comparisons:
        if _not_run(c):
            lines.append(f"{'NOT RUN':<10} {c.config_id}: baseline entry with no run in this "
                         "report (not a failure)")
            continue
        for v in c.verdicts:
            values = _values(v)
            if not values and v.note:  # nothing to show but why: "counters: not counted ..."
                lines.append(f"{_label(v):<10} {c.config_id} {v.metric}: {v.note}")
                continue
            lines.append(f"{_label(v):<10} {c.config_id} {v.metric}:{values}"
                         + (f"  [{v.note}]" if v.note else ""))
        if c.transcripts:
            lines.append(f"CHANGED    {c.config_id}: {len(c.transcripts)} transcript(s)")
            lines += [f"           {line}" for line in accuracy_lines(c)]
            lines += [f"           {t.id}: {t.diff}" for t in c.transcripts[:10]]
    findings = [f for c in comparisons for f in policy.findings(c)]
    for f in findings:
        lines.append(f"{'FAIL' if f.fails else 'WARN':<10} {f.config_id} {f.check}: "
                     f"{finding_text(f)}")
    for problem in problems:
        lines.append(f"{'FAIL':<10} could not judge: {problem}")
    if refresh and any(f.check == "missing" for f in findings):
        lines.append(f"           create the missing entries with: {refresh}")
    unjudged = sum(1 for c in comparisons if c.not_judged)
    if problems or unjudged:
        lines.append("result: FAIL (could not judge "
                     + (f"{unjudged} of {len(_judged(comparisons))} config(s))" if unjudged
                        else "the input)"))
    else:
        lines.append("result: " + ("FAIL" if any(f.fails for f in findings) else "ok"))
    # ids, notes, transcripts and messages come from data: no escape sequence reaches the
    # terminal or the CI log
    return "\n".join(terminal_safe(line, newlines=False) for line in lines)


def _judged(comparisons: list[Comparison]) -> list[Comparison]:
    """The configs of this run or report (judged or not), without baseline entries of
    configs that were not run: those are counted nowhere."""
    return [c for c in comparisons if not _not_run(c)]


def html_link(url: str | None) -> str | None:
    """A Markdown link to the HTML report (an uploaded artifact), or None. Only http(s) URLs
    without spaces or markup characters are linked: the URL comes from the command line or
    the CI environment and ends up in a pull-request comment."""
    if not url:
        return None

    url = redact_link(url)  # no credentials in a PR comment
    if not re.fullmatch(r"https?://[^\s<>()\[\]`\"'|]+", url):
        raise AsrbenchError(f"--html-url {url!r}: expected an http(s) URL without spaces, "
                            "brackets or quotes")
    return f"📈 [HTML report: trends, verdicts, changed transcripts]({url})"


def markdown_summary(comparisons: list[Comparison], policy: Policy, refresh: str | None = None,
                     title: str = "asrbench regression check", max_transcripts: int = 20,
                     html_url: str | None = None, problems: Iterable[str] = ()) -> str:
    """GitHub-flavoured Markdown: one table per config, its changed transcripts, what fails,
    and a link to the HTML report when one was uploaded (html_url). Every value that comes
    from data is escaped (escape_md). "No failure" only when every config was judged: one
    that could not be (`not_judged`) or a problem with the whole input (`problems`) fails."""
    problems = list(problems)
    failing = sorted({f.config_id for c in comparisons for f in policy.findings(c) if f.fails})
    selected = _judged(comparisons)
    unjudged = [c for c in selected if c.not_judged]
    lines = [f"## {title}", ""]
    if problems:
        lines.append(f"**❌ could not judge**: {escape_md(problems[0])}"
                     + "".join(f"; {escape_md(p)}" for p in problems[1:]))
    elif failing:
        lines.append(f"**❌ {len(failing)} config(s) fail** across {len(selected)} config(s)"
                     + (f"; could not judge {len(unjudged)}." if unjudged else "."))
    elif selected:
        lines.append(f"**✅ no failure** across {len(selected)} config(s).")
    else:
        lines.append("**➖ no config was selected: nothing judged.**")
    link = html_link(html_url)
    if link:
        lines += ["", link]
    not_run = [c.config_id for c in comparisons if _not_run(c)]
    for comparison in comparisons:
        if _not_run(comparison):
            continue
        lines += ["", f"### {escape_md(comparison.config_id)}", ""]
        if comparison.not_judged:
            lines.append(f"❌ **could not judge**: {escape_md(comparison.not_judged)}")
            continue
        lines += ["| metric | baseline | current | Δ | Δ % | allowed | verdict | note |",
                  "|---|---:|---:|---:|---:|---:|---|---|"]
        for v in comparison.verdicts:
            arrow = "" if v.delta is None or v.delta == 0 else ("▲ " if v.delta > 0 else "▼ ")
            delta = "–" if v.delta is None else f"{arrow}{format_delta(v.delta, v.metric)}"
            rel = "–" if v.relative is None else f"{v.relative:+.1%}"
            allowed = "–" if v.allowed is None else format_allowed(v.allowed, v.metric)
            lines.append(f"| {escape_md(v.metric)} | {format_number(v.baseline, v.metric)} | "
                         f"{format_number(v.value, v.metric)} | {delta} | {rel} | {allowed} | "
                         f"{_verdict_cell(policy, comparison, v)} | {escape_md(v.note)} |")
        findings = policy.findings(comparison)
        if findings:
            lines.append("")
            lines += [f"- {'❌ fails' if f.fails else '⚠️ warns'}: {escape_md(f.check)}: "
                      f"{escape_md(finding_text(f))}" for f in findings]
        if comparison.transcripts:
            lines += [""] + [f"- {escape_md(line)}" for line in accuracy_lines(comparison)]
            shown = comparison.transcripts[:max_transcripts]
            lines += ["", f"<details><summary>{len(comparison.transcripts)} transcript(s) changed"
                          "</summary>", "", "| utterance | word diff (baseline → current) |",
                      "|---|---|"]
            for change in shown:
                lines.append(f"| {escape_md(change.id)} | {escape_md(change.diff)} |")
            if len(comparison.transcripts) > len(shown):
                lines.append(f"| … | {len(comparison.transcripts) - len(shown)} more in the JSON "
                             "report |")
            lines += ["", "</details>"]
    if not_run:
        lines += ["", f"{len(not_run)} baseline entr{'y' if len(not_run) == 1 else 'ies'} with no "
                  "run in this report (not a failure): "
                  + ", ".join(f"`{escape_md(i).replace('`', '')}`" for i in not_run)]
    if refresh and any(not c.has_entry for c in comparisons):
        head = ("No baseline entry yet" if policy.allow_missing
                else "❌ **Missing baseline entries**")
        if refresh.startswith("asrbench "):  # one command: a block to copy
            lines += ["", head + "; create them with:", "", "```", refresh.replace("`", "'"),
                      "```"]
        else:  # what to do, in words (a counters-only report cannot create them)
            lines += ["", f"{head}; create them from {escape_md(refresh)}"]
    return "\n".join(lines) + "\n"


def _verdict_cell(policy: Policy, comparison: Comparison, v: Any) -> str:
    """A verdict as the table shows it, with what the policy makes of it: a regression that
    only warns is not "❌", an improvement that fails (the baseline is out of date) is."""
    if v.value is None and v.baseline is None and v.verdict == "unchanged":
        return "➖ not compared"
    finding = policy.verdict_finding(comparison, v)
    if finding is not None and v.verdict == "regressed" and not finding.fails:
        return "⚠️ regressed (warns)"
    if finding is not None and v.verdict == "improved" and finding.fails:
        return "❌ improved (refresh the baseline)"
    return ARROWS.get(v.verdict, escape_md(v.verdict))


def outcome_text(outcome: GateOutcome) -> str:
    """The terminal output of a gate outcome (`asrbench compare`)."""
    return gate_text(outcome.comparisons, outcome.policy, outcome.refresh, outcome.problems)


def outcome_markdown(outcome: GateOutcome) -> str:
    """The Markdown summary of a gate outcome (PR comment, step summary, pytest's summary)."""
    return markdown_summary(outcome.comparisons, outcome.policy, outcome.refresh,
                            html_url=outcome.html_url, problems=outcome.problems)


def _entry_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def change_table(changes: list[tuple[str, BaselineEntry | None, BaselineEntry]]) -> str:
    """old -> new for every metric of every updated entry (gate.baselines.update's changes),
    for review in the PR."""
    lines = []
    for config_id, old, new in changes:
        lines.append(f"{config_id}{'  (new entry)' if old is None else ''}")
        # throughput and noise exactly as before: kept from the earlier recording (a
        # counters-only report timed nothing), never shown as measured now
        kept = (old is not None and old.noise == new.noise
                and old.metrics.samples_per_second == new.metrics.samples_per_second)
        for name in GATED_METRICS:
            before = "-" if old is None else _entry_number(getattr(old.metrics, name))
            lines.append(f"  {name:<20} {before:>10} -> "
                         f"{_entry_number(getattr(new.metrics, name))}"
                         + ("  (kept: not measured by this report)"
                            if kept and name == "samples_per_second" else ""))
        if old is not None and old.normalizer != new.normalizer:
            lines.append(f"  normalizer: {old.normalizer or '(not recorded)'} -> {new.normalizer}")
        processes = new.noise.samples_per_second_per_process
        if kept:
            lines.append("  throughput band: as recorded before (this report measured none)")
        elif processes:
            lines.append(f"  recorded from {len(processes)} processes: samples/s "
                         + ", ".join(f"{v:.4g}" for v in processes))
        else:
            lines.append(f"  recorded from 1 process: no between-process spread, so its "
                         f"throughput band is at least {ONE_PROCESS_REL:.0%} (record from "
                         f"{RECOMMENDED_PROCESSES} processes for a band of its own)")
        if old is not None and old.predictions_sha256 != new.predictions_sha256:
            changed = sum(1 for k, v in new.predictions.items() if old.predictions.get(k) != v)
            lines.append(f"  transcripts: {changed} changed")
        before_counts = old.counters if old is not None else None
        if new.counters is not None and before_counts is None:
            lines.append(f"  counters: recorded ({counts_summary(new.counters)})")
        elif new.counters is None and before_counts is not None:
            lines.append("  counters: dropped (the report was not counted)")
        elif new.counters is not None and before_counts is not None:
            recounted = refusal(new.counters, before_counts)
            changes_text = (f"recounted: the entry's old counts are not comparable with these "
                            f"({recounted.split(';')[0]})" if recounted
                            else describe_changes(counter_verdicts(config_id, new.counters,
                                                                   before_counts)))
            if not changes_text and (new.counters.model_dump(exclude=UNSTABLE)
                                     != before_counts.model_dump(exclude=UNSTABLE)):
                # moved, but in what no counter verdict compares (the decode's length, a
                # selection of other batches): never "unchanged"
                changes_text = (f"changed ({counts_summary(before_counts)} -> "
                                f"{counts_summary(new.counters)}; decode steps "
                                f"{before_counts.decode_steps} -> {new.counters.decode_steps}, "
                                f"tokens {before_counts.tokens} -> {new.counters.tokens})")
            lines.append(f"  counters: {changes_text or 'unchanged'}")
    return "\n".join(lines)


def baseline_update_text(update: BaselineUpdate) -> str:
    """What `asrbench baseline update` prints: per baseline file written, its change_table;
    then a warning per run recorded while the machine was busy."""
    tables = [f"updated {path}:\n" + change_table(changes) for path, changes in update.files]
    tables += [f"WARNING {r.config.id}: recorded while the machine was busy "
               f"({describe_contention(r.timings.contention)}): its samples/s understate "
               "this code; record it again on a quiet machine"
               for r in update.busy if r.timings.contention is not None]
    return "\n".join(tables)


def ab_header(outcome: Outcome) -> list[str]:
    """Plain lines saying what an A/B compared and how: the sides, the shared options, the
    rounds and the decision's settings."""
    s = outcome.settings
    lines = [f"base: {outcome.sides['base'].describe()}",
             f"head: {outcome.sides['head'].describe()}",
             f"shared options: {redact_command(s.shared) or '(none)'}",
             f"{len(outcome.rounds)} round(s) of fresh processes, {s.round_passes} timed pass(es) "
             f"per side per round" + (f" on the first {s.rounds_limit} utterances"
                                  if s.rounds_limit else "")
             + (f", both sides at once on cards {' and '.join(s.cards)} ({s.cards_variable}, "
                "dealt at random each round)" if s.cards else "")
             + f", threshold {s.threshold:.0%}, alpha {s.alpha:g} "
             f"({s.level(len(outcome.pairs)):.4g} per look at rounds "
             f"{', '.join(map(str, s.looks))}"
             + (f" and per config pair of {len(outcome.pairs)}" if len(outcome.pairs) > 1
                else "") + "), "
             f"order seed {s.seed}"]
    if s.hpu_recipes:
        lines.append(f"Gaudi recipe cache: one folder per side ({RECIPE_VARIABLE}, in "
                     f"{s.recipe_cache or 'the working directory'}), kept across rounds: "
                     "rounds after the first load the compiled recipes instead of compiling")
    if outcome.interrupted:
        lines.append("INTERRUPTED: the rounds that finished are below; no verdict is final")
    return lines


def _ab_stopped(result: AbResult) -> list[str]:
    """An interrupted A/B decided nothing: what its summaries say first, never "no failure"
    or "result: ok" (nor a FAIL from a round that was not a decision)."""
    return (["the A/B was interrupted before its decision: the rounds so far are below, "
             "no verdict"] if result.outcome.interrupted else [])


def ab_text(result: AbResult, policy: Policy) -> str:
    """The terminal output of `asrbench ab`: what was compared and how, then the verdicts."""
    return ("\n".join(ab_header(result.outcome)) + "\n"
            + gate_text(result.comparisons, policy, None, _ab_stopped(result)))


def ab_markdown(result: AbResult, policy: Policy) -> str:
    """The Markdown summary of `asrbench ab`: the verdict tables, then what was compared."""
    return markdown_summary(result.comparisons, policy, title="asrbench A/B",
                            problems=_ab_stopped(result)) + "\n" + "".join(
        f"- {escape_md(line)}\n" for line in ab_header(result.outcome))


def publish_markdown(markdown: str, path: Any = None) -> None:
    """Write a Markdown summary to `path` (if given) and append it to GitHub's step summary
    when $GITHUB_STEP_SUMMARY is set; a failed write is one line (the verdicts stand)."""
    try:
        path = Path(path) if path else None
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, markdown)  # a failed write keeps the old summary whole
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(markdown)
    except OSError as exc:
        raise AsrbenchError(f"could not write the Markdown summary ({exc.strerror or exc}): "
                            f"the verdicts above stand") from None

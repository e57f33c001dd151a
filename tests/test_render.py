"""Rendering (asrbench/render/text.py): what data puts into the Markdown posted to pull requests is
escaped, and the one-line verdict reads right even where a value is missing."""

from __future__ import annotations

import dataclasses

import pytest
from factories import make_entry, make_run, make_verdict

from asrbench.gate.compare import Comparison, TranscriptChange
from asrbench.gate.policy import Policy
from asrbench.render.text import (
    describe_verdict,
    escape_md,
    markdown_summary,
    run_notes,
    summary_table,
)

HOSTILE = [
    "<img src=x onerror=alert(1)>", "</details><script>alert(1)</script>", "a | b | c",
    "`code` and ``` fences", "@octocat please look", "line one\nline two\r\n## heading",
    "[link](http://evil)", "**bold** _it_ # not a heading", "back\\slash",
    "see https://evil.example/x and WWW.evil.example",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_md_leaves_no_markup_from_data(text):
    out = escape_md(text)
    for forbidden in ("<", ">", "|", "`", "\n", "\r", "[", "]"):
        assert forbidden not in out, (text, out)
    assert "@octocat" not in out  # no mention: the @ is followed by a zero-width space
    assert "&amp;#" not in out  # no entity escaped twice
    # no bare URL GitHub would autolink (a zero-width space after the colon or the www)
    assert "://" not in out and "www." not in out.lower()


def test_escape_md_keeps_plain_text_readable():
    assert escape_md("common_voice_en_0001: it rained") == "common_voice_en_0001: it rained"
    assert escape_md("a <b> & 'c'") == "a &lt;b&gt; &amp; &#39;c&#39;"


def test_escape_md_shows_control_characters_as_escapes():
    # An escape sequence (ESC, BEL) or a bidi override (U+202E) from data reaches the Markdown
    # file (--markdown, $GITHUB_STEP_SUMMARY) as text, never as the character: `cat` of the file
    # in a CI log cannot recolour or retitle the terminal, and a rendered summary cannot show
    # a transcript's words re-ordered.
    out = escape_md("utt\x1b[2J\x07 rtl\u202eevil\x9b")
    assert out == "utt&#92;x1b&#91;2J&#92;x07 rtl&#92;u202eevil&#92;x9b"
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in out)
    assert escape_md("हिन्दी é ✅\tend") == "हिन्दी é ✅ end"  # other text as it was


def test_markdown_summary_escapes_ids_transcripts_and_notes():
    verdict = make_verdict("cfg|x", "wer", "regressed", 0.3, 0.2, 0.1, 0.005, note="<b>note</b>")
    change = TranscriptChange(id="utt|<img src=x>", baseline="old", current="new @team",
                              diff="[-old-] {+new @team+}")
    comparison = Comparison(config_id="cfg|x\n## injected", verdicts=[verdict],
                            transcripts=[change])
    text = markdown_summary([comparison], Policy())
    body = "\n".join(line for line in text.splitlines())
    assert "<img" not in body and "<b>" not in body and "@team" not in body
    assert "\n## injected" not in body  # the id's newline did not start a heading
    # every table row has its header's column count: no | from data split a cell
    lines = body.splitlines()
    for header in ("| metric |", "| utterance |"):
        start = next(i for i, line in enumerate(lines) if line.startswith(header))
        rows = [lines[start]] + [row for row in lines[start + 2:] if row.startswith("| ")][:1]
        assert len(rows) == 2 and rows[0].count("|") == rows[1].count("|"), rows
    assert "❌ 1 config(s) fail" in text


def test_describe_verdict_handles_missing_numbers():
    line = describe_verdict(make_verdict("c", "wer", "regressed", None, 0.25,
                                         None, None, note="the run has no WER"))
    assert line.startswith("wer: baseline 0.2500 -> - REGRESSED")
    full = describe_verdict(make_verdict("c", "wer", "improved", 0.19, 0.2, -0.01, 0.005))
    assert full == "wer: baseline 0.2000 -> 0.1900 (delta -0.0100, allowed ±0.0050) IMPROVED"


def test_markdown_links_the_html_report_only_for_a_plain_http_url(tmp_path, capsys):
    from asrbench.errors import AsrbenchError

    comparison = Comparison(config_id="cfg",
                            verdicts=[make_verdict("cfg", "wer", "unchanged", 0.1, 0.1, 0.0,
                                                   0.005)])
    url = "https://github.com/o/r/actions/runs/123"
    text = markdown_summary([comparison], Policy(), html_url=url)
    assert f"[HTML report: trends, verdicts, changed transcripts]({url})" in text
    assert "HTML report" not in markdown_summary([comparison], Policy())
    for bad in ("javascript:alert(1)", "https://x/a b", "https://x/)[y](z", 'https://x/"q'):
        with pytest.raises(AsrbenchError, match="--html-url"):
            markdown_summary([comparison], Policy(), html_url=bad)


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()[2:]]


def test_summary_table_reads_the_typed_run():
    run = make_run("quiet", wer=0.25, cer=0.125, rates=(4.0, 5.0, 6.0), wer_normalized=None,
                   metrics={"wer": 0.25, "wer_normalized": None, "cer": 0.125,
                            "samples_per_second": 5.0, "rtfx": 12.5, "tokens_per_second": 40.0},
                   dataset={"skipped": [{"id": "x", "reason": "no audio"}]})
    (row,) = _rows(summary_table([run]))
    # rates 4, 5, 6: stdev 1, mean 5 -> RSD 20.0%; an undefined normalized WER reads n/a
    assert row == ["quiet", "1", "1", "0.2500", "n/a", "0.1250", "5.000", "20.0%", "12.50",
                   "40.0"]


def test_a_single_timed_pass_has_no_rsd():
    (row,) = _rows(summary_table([make_run("one", rates=(5.0,))]))
    assert row[7] == "n/a"
    assert not any("noisy" in line for line in run_notes([make_run("one", rates=(5.0,))]))


def test_run_notes_warn_of_a_noisy_machine_above_ten_percent():
    noisy = make_run("noisy", rates=(4.0, 5.0, 6.0))  # RSD 20%
    steady = make_run("steady", rates=(9.9, 10.0, 10.1))  # RSD 1%
    notes = run_notes([noisy, steady])
    assert notes == ["noisy: WARNING noisy machine: samples/s varied 20% between passes; "
                     "numbers are less trustworthy"]


def test_run_notes_name_compilations_and_agreement():
    run = make_run("g", compilations={"counter": "graphs", "warmup": 2, "passes": [0, 1, 0]},
                   reference={"reference": "stock", "utterances": 4, "identical": 3,
                              "share": 0.75, "wer": 0.05})
    assert run_notes([run]) == [
        "g: graph compilations: warm-up 2, timed passes [0, 1, 0]  <- RECOMPILED while timed",
        "g: agreement with stock: 3/4 transcripts identical, WER vs reference 0.0500"]


def test_a_baseline_entry_without_a_run_is_one_line_not_a_table():
    """The default run never makes the 2-rank entries of baselines/cpu.json: `compare` says so
    once per entry, not with a MISSING line per metric, and it fails nothing."""
    from asrbench.gate.compare import compare_run, missing_entries
    from asrbench.render.text import gate_text

    run = make_run("ran", predictions={"u1": "a b"})
    entries = {"ran": make_entry(run), "ws2-a": make_entry(run), "ws2-b": make_entry(run)}
    comparisons = [compare_run(run, entries["ran"]), *missing_entries(entries, {"ran"})]
    text = gate_text(comparisons, Policy(), None)
    not_run = [line for line in text.splitlines() if line.startswith("NOT RUN")]
    assert not_run == [
        "NOT RUN    ws2-a: baseline entry with no run in this report (not a failure)",
        "NOT RUN    ws2-b: baseline entry with no run in this report (not a failure)"]
    assert "MISSING" not in text and text.endswith("result: ok")
    markdown = markdown_summary(comparisons, Policy())
    assert ("2 baseline entries with no run in this report (not a failure): `ws2-a`, `ws2-b`"
            in markdown)
    assert "### ws2-a" not in markdown and "### ran" in markdown


def test_a_policy_finding_is_data_and_render_says_it():
    """The policy returns what it found (the verdict, the interval, --throughput warn), not a
    sentence; render.text.finding_text says it, as the pytest door and `asrbench compare`
    print it."""
    from asrbench.gate.policy import Interval
    from asrbench.render.text import THROUGHPUT_HINT, finding_text

    slower = make_verdict("c", "samples_per_second", "regressed", 4.0, 8.0, -4.0, 2.5,
                          note="beyond band")
    better = make_verdict("c", "wer", "improved", 0.19, 0.25, -0.06, 0.005)
    comparison = Comparison(config_id="c", verdicts=[slower, better], has_entry=True,
                            transcripts=[TranscriptChange(id="u", baseline="a", current="b",
                                                          diff="[-a-] {+b+}")])
    improved, failing, changed = Policy().findings(comparison)
    assert (failing.verdict, failing.warn_only, failing.fails) == (slower, False, True)
    assert finding_text(failing) == ("samples_per_second: baseline 8 -> 4 (delta -4, allowed "
                                     "-2.5) REGRESSED [beyond band]" + THROUGHPUT_HINT)
    [warned] = Policy(throughput="warn").findings(comparison, ["throughput"])
    assert (warned.verdict, warned.warn_only, warned.fails) == (slower, True, False)
    assert finding_text(warned) == ("samples_per_second: baseline 8 -> 4 (delta -4, allowed "
                                    "-2.5) REGRESSED [beyond band] (--throughput warn: a warning)")
    assert (improved.verdict, improved.interval) == (better, None)
    noisy = dataclasses.replace(improved, interval=Interval(0.95, -0.0712, 0.0031), fails=False)
    assert finding_text(noisy) == (
        "wer: baseline 0.2500 -> 0.1900 (delta -0.0600, allowed ±0.0050) IMPROVED (better than "
        "the baseline: refresh it if intended); not significant: 95% CI -0.0712 .. +0.0031 "
        "includes 0 (--wer-significance)")
    assert (changed.check, changed.transcripts, finding_text(changed)) == (
        "transcripts", 1, "1 transcript(s) differ from the baseline")
    [missing] = Policy().findings(Comparison(config_id="c", has_entry=False), ["missing"])
    assert (missing.verdict, finding_text(missing)) == (None, "no baseline entry")
    [unjudged] = Policy().findings(Comparison(config_id="c", not_judged="no file"))
    assert (unjudged.not_judged, finding_text(unjudged)) == ("no file", "could not judge: no file")


def test_a_markdown_summary_that_cannot_be_written_keeps_the_old_one_whole(tmp_path,
                                                                          monkeypatch):
    """A write that fails half-way (a full disk, a file size limit) left a truncated summary
    where the old one was; the summary is written atomically now, as reports are."""
    import errno
    import os

    from asrbench.errors import AsrbenchError
    from asrbench.render.text import publish_markdown

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    summary = tmp_path / "s.md"
    summary.write_text("OLD SUMMARY\n", encoding="utf-8")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(AsrbenchError, match="could not write the Markdown summary .No space"):
        publish_markdown("## new\n" * 1000, summary)
    assert summary.read_text(encoding="utf-8") == "OLD SUMMARY\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.md"]  # no temporary file left
    monkeypatch.undo()
    publish_markdown("## new\n", summary)
    assert summary.read_text(encoding="utf-8") == "## new\n"

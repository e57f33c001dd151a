"""Nothing lost, nothing leaked, round three (issue 25): hostile report content, secrets in
history URLs and command lines, impossible numbers, symlinked baselines and control characters.

Each hostile input goes to every command that reads it; each must end in ONE line on stderr,
exit status 2, no traceback, and nothing written (no store, no HTML, no export, no baseline).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from factories import (
    SECRET,
    make_report,
    make_report_document,
    make_run,
    one_line_error,
    write_report,
)

from asrbench.cli.main import main


def _reading_commands(report: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that reads a report file, each with its own output path."""
    return {
        "history add": ["history", "add", "--report", str(report), "--history",
                        str(tmp_path / "h.sqlite")],
        "html": ["html", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
                 "--out", str(tmp_path / "page.html")],
        "export pytest-benchmark": ["export", "--report", str(report), "--format",
                                    "pytest-benchmark", "--out", str(tmp_path / "pb.json")],
        "export github-action-benchmark": ["export", "--report", str(report), "--format",
                                           "github-action-benchmark", "--direction", "bigger",
                                           "--out", str(tmp_path / "gab.json")],
        "compare": ["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
                    "--markdown", str(tmp_path / "summary.md")],
        "baseline update": ["baseline", "update", "--report", str(report), "--baseline-dir",
                            str(tmp_path / "b")],
    }


def _refused_everywhere(tmp_path: Path, capsys, document: dict | str, expected: str,
                        commands: tuple[str, ...] | None = None) -> None:
    report = tmp_path / "hostile.json"
    report.write_text(document if isinstance(document, str) else json.dumps(document),
                      encoding="utf-8")
    for name, argv in _reading_commands(report, tmp_path).items():
        if commands and name not in commands:
            continue
        assert main(argv) == 2, name
        err = one_line_error(capsys)
        assert expected in err, (name, err)
    # nothing written from the hostile data; compare's Markdown summary says, fail-closed,
    # that it could not judge (issue 28: the summary a workflow posts must never be missing
    # or stale)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written in (["hostile.json"], ["hostile.json", "summary.md"]), written
    if "summary.md" in written:
        assert "could not judge" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"k": [value]} if _ % 2 else [value]
    return value


# -- 1. hostile report content ----------------------------------------------------------------

def test_a_deeply_nested_value_is_refused_when_read(tmp_path, capsys):
    document = make_report_document()
    document["runs"][0]["extra_field"] = _nested(500)
    _refused_everywhere(tmp_path, capsys, document, "runs[0].extra_field...: nested deeper than")


def test_the_depth_error_says_nested_too_deep(tmp_path):
    from asrbench.errors import AsrbenchError
    from asrbench.formats.io import MAX_DEPTH, read_json

    path = tmp_path / "deep.json"
    path.write_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(AsrbenchError, match=f"nested deeper than {MAX_DEPTH} levels"):
        read_json(path, "report")
    path.write_text("[" * 100_000 + "]" * 100_000)  # past the parser's own recursion limit
    with pytest.raises(AsrbenchError, match="nested deeper than"):
        read_json(path, "report")
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert read_json(path, "report") is not None  # the limit itself is fine


def test_a_lone_surrogate_in_a_transcript_is_refused_when_read(tmp_path, capsys):
    document = make_report_document(predictions={"u1": "a", "u2": "b", "u3": "c", "u4": "d"})
    text = json.dumps(document).replace('"prediction": "d"', '"prediction": "bad \\ud800 text"')
    assert "\\ud800" in text
    _refused_everywhere(tmp_path, capsys, text,
                        "runs[0].utterances[3].prediction: lone surrogate")


def test_a_lone_surrogate_in_a_key_is_refused(tmp_path, capsys):
    text = json.dumps(make_report_document()).replace('"hostname"', '"host\\udc00name"')
    _refused_everywhere(tmp_path, capsys, text, "environment: a key holds a lone surrogate",
                        commands=("history add", "compare"))


@pytest.mark.parametrize("schema", [True, 1.0, "1"])
def test_schema_must_be_the_integer_one(tmp_path, capsys, schema):
    document = make_report_document()
    document["schema"] = schema
    _refused_everywhere(tmp_path, capsys, document, "schema:")


def test_a_boolean_schema_is_refused_by_the_model_too():
    from asrbench.errors import AsrbenchError
    from asrbench.formats.model import parse_baselines, parse_report

    document = make_report_document()
    document["schema"] = True
    with pytest.raises(AsrbenchError, match="schema: expected the integer 1, got true"):
        parse_report(document)
    with pytest.raises(AsrbenchError, match="schema: expected the integer 1, got true"):
        parse_baselines({"schema": True, "device_class": "cpu", "entries": {}})


def _store_with_one_report(tmp_path: Path, capsys) -> Path:
    store = tmp_path / "h.sqlite"
    report = write_report(tmp_path / "r.json", make_report_document())
    assert main(["history", "add", "--report", str(report), "--history", str(store)]) == 0
    capsys.readouterr()
    return store


@pytest.mark.parametrize("column,value", [
    ("samples_per_pass", "not json"), ("samples_per_pass", '{"a": 1}'),
    ("samples_per_pass", "[1e999]"), ("wer", "text"), ("passes", "many"),
])
def test_a_damaged_runs_row_is_one_line_naming_it(tmp_path, capsys, column, value):
    store = _store_with_one_report(tmp_path, capsys)
    with sqlite3.connect(store) as conn:
        conn.execute(f"UPDATE runs SET {column} = ?", (value,))
    report = tmp_path / "r.json"
    before = store.read_bytes()
    for argv in (["history", "show", "--history", str(store)],
                 ["history", "changes", "--history", str(store)],
                 ["html", "--report", str(report), "--history", str(store), "--baseline-dir",
                  str(tmp_path / "b"), "--out", str(tmp_path / "page.html")]):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert "runs row of report #1, position 0 is damaged" in err, err
    assert not (tmp_path / "page.html").exists()
    assert store.read_bytes() == before


@pytest.mark.parametrize("value", ["{not json", "[" * 5000 + "]" * 5000,
                                   '{"schema": 1, "x": "\\ud800"}'])
def test_a_damaged_stored_report_is_one_line_naming_it(tmp_path, capsys, value):
    store = _store_with_one_report(tmp_path, capsys)
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE reports SET report_json = ?", (value,))
    assert main(["history", "show", "--json", "--history", str(store)]) == 2
    err = one_line_error(capsys)
    assert "invalid report #1 in history" in err, err


# -- 2. secrets ---------------------------------------------------------------------------------

BAD_URLS = [
    f"postgresql://u:{SECRET}@[::1/db",  # a bracket never closed
    f"postgresql://u:{SECRET}@host:port/db",  # not a number
    f"postgresql://u:{SECRET}@host:99999/db",  # out of range
    f"postgres://u:{SECRET}@[::1]:70000/db",
    f"postgresql://u:{SECRET}@host:0/db",
]


def _history_commands(url: str, tmp_path: Path) -> list[list[str]]:
    report = write_report(tmp_path / "r.json", make_report_document())
    return [["history", "add", "--report", str(report), "--history", url],
            ["history", "list", "--history", url],
            ["history", "show", "--history", url],
            ["history", "changes", "--history", url],
            ["html", "--report", str(report), "--history", url, "--baseline-dir",
             str(tmp_path / "b"), "--out", str(tmp_path / "page.html")]]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_postgresql_url_never_quotes_its_password(tmp_path, capsys, url):
    for argv in _history_commands(url, tmp_path):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert SECRET not in err and "--history postgres" in err, err
    assert not (tmp_path / "page.html").exists()


def test_a_password_query_parameter_is_never_quoted(tmp_path, capsys):
    """A well-formed URL to a port nothing listens on: the driver's error, cleaned."""
    pytest.importorskip("psycopg")
    url = (f"postgresql://u@127.0.0.1:1/db?password={SECRET}&sslpassword={SECRET}2"
           "&connect_timeout=2")
    for argv in _history_commands(url, tmp_path):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert SECRET not in err and "cannot connect to history postgresql://u@127.0.0.1:1/db" \
            in err, err


@pytest.mark.parametrize("text,expected", [
    (f"postgresql://user:{SECRET}@db.example:5432/bench",
     "postgresql://user:***@db.example:5432/bench"),
    (f"--asrbench-history=postgresql://user:{SECRET}@h/db",
     "--asrbench-history=postgresql://user:***@h/db"),
    (f"postgresql://h/db?user=u&password={SECRET}&sslpassword={SECRET}",
     "postgresql://h/db?user=u&password=***&sslpassword=***"),
    (f"postgresql://u:{SECRET}@[::1/db", "postgresql://u:***@[::1/db"),
    (f"postgresql://u:p@ss{SECRET}@h/db", "postgresql://u:***@h/db"),
    ("postgresql://user@h:5432/db", "postgresql://user@h:5432/db"),
    ("history.sqlite", "history.sqlite"),
])
def test_redact_secrets(text, expected):
    from asrbench.formats.environment import redact_secrets

    assert redact_secrets(text) == expected


def test_the_captured_command_line_holds_no_password(monkeypatch):
    from asrbench.formats.environment import environment

    monkeypatch.setattr(sys, "argv", ["pytest", "benchmarks", "--asrbench-history",
                                      f"postgresql://user:{SECRET}@db/bench",
                                      f"--x=postgresql://h/db?password={SECRET}"])
    argv = environment()["argv"]
    assert SECRET not in json.dumps(argv)
    assert argv[:3] == ["pytest", "benchmarks", "--asrbench-history"]
    assert argv[3] == "postgresql://user:***@db/bench"


def test_a_password_in_an_old_reports_argv_reaches_no_output(tmp_path, capsys):
    """A report written before argv was redacted (as the pytest plugin's
    --asrbench-history postgresql://user:PASSWORD@host/db did): the store, the HTML page, the
    exports and every line printed hold no password."""
    document = make_report_document()
    document["environment"]["argv"] = ["pytest", "benchmarks", "--asrbench-history",
                                       f"postgresql://user:{SECRET}@db.example/bench"]
    report = write_report(tmp_path / "r.json", document)
    store = tmp_path / "h.sqlite"
    outputs = []
    for argv in (["history", "add", "--report", str(report), "--history", str(store)],
                 ["history", "show", "--json", "--history", str(store)],
                 ["history", "show", "--history", str(store)],
                 ["html", "--report", str(report), "--history", str(store), "--baseline-dir",
                  str(tmp_path / "b"), "--out", str(tmp_path / "page.html")],
                 ["export", "--report", str(report), "--format", "pytest-benchmark", "--out",
                  str(tmp_path / "pb.json")],
                 ["baseline", "update", "--report", str(report), "--baseline-dir",
                  str(tmp_path / "b")]):
        assert main(argv) == 0, argv
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    assert "this report is #1" in (tmp_path / "page.html").read_text()  # same digest as stored
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != report]
    assert {p.name for p in written} >= {"h.sqlite", "page.html", "pb.json", "cpu.json"}
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    for text in outputs:
        assert SECRET not in text


# -- 3. numbers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r["runs"][0]["metrics"].update(rtfx=-3.0), "metrics.rtfx is -3.0"),
    (lambda r: r["runs"][0]["throughput"].update(samples_per_second_per_pass=[5e-324, 10.0]),
     "timed pass 1 has samples/s 5e-324"),
])
def test_exports_refuse_impossible_numbers(tmp_path, capsys, mutate, expected):
    document = make_report_document()
    mutate(document)
    report = write_report(tmp_path / "r.json", document)
    argv = ["export", "--report", str(report), "--format", "pytest-benchmark", "--out",
            str(tmp_path / "pb.json")]
    assert main(argv) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "pb.json").exists()
    if "rtfx" in expected:  # the other format carries no pass times, but refuses it too
        assert main(["export", "--report", str(report), "--format", "github-action-benchmark",
                     "--direction", "smaller", "--out", str(tmp_path / "gab.json")]) == 2
        assert expected in one_line_error(capsys)
        assert not (tmp_path / "gab.json").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_tolerance_that_is_not_finite_is_one_line(tmp_path, capsys, value):
    report = write_report(tmp_path / "r.json", make_report_document())
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b"), "--tolerance", f"wer_abs={value}"]) == 2
    assert "tolerance wer_abs must be a finite number >= 0" in one_line_error(capsys)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_baseline_file_with_a_tolerance_that_is_not_finite_is_one_line(tmp_path, capsys,
                                                                         value):
    report = write_report(tmp_path / "r.json", make_report_document())
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b")]) == 0
    path = tmp_path / "b" / "cpu.json"
    text = path.read_text().replace('"tolerance": {}', f'"tolerance": {{"wer_abs": {value}}}')
    assert value in text
    path.write_text(text)
    capsys.readouterr()
    for argv in (["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b")],
                 ["baseline", "update", "--report", str(report), "--baseline-dir",
                  str(tmp_path / "b")]):
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert "entries['cfg'].tolerance.wer_abs: must be a finite number" in err, err
    assert path.read_text() == text


def test_check_tolerance_never_lets_a_pydantic_error_through():
    from asrbench.errors import AsrbenchError
    from asrbench.formats.model import Tolerance
    from asrbench.gate.baselines import check_tolerance

    for value in (float("nan"), float("inf"), -1.0, True, "0.1"):
        with pytest.raises(AsrbenchError, match="must be a finite number >= 0"):
            check_tolerance({"wer_abs": value}, "matrix [cpu] tolerance")
    assert check_tolerance({"wer_abs": 0.25}, "x") == Tolerance(wer_abs=0.25)


# -- 4. symlinked baseline files -----------------------------------------------------------------

def test_write_text_atomic_writes_through_a_symlink(tmp_path):
    from asrbench.formats.io import write_text_atomic

    target = tmp_path / "elsewhere" / "real.json"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "b" / "cpu.json"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "elsewhere" / "real.json")
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.json"]  # no temp left
    dangling = tmp_path / "b" / "gone.json"
    dangling.symlink_to(tmp_path / "elsewhere" / "new.json")
    write_text_atomic(dangling, "created\n")
    assert dangling.is_symlink() and (tmp_path / "elsewhere" / "new.json").read_text() == \
        "created\n"


def test_baseline_update_writes_through_a_symlinked_baseline_file(tmp_path, capsys):
    shared = tmp_path / "shared"
    assert main(["baseline", "update", "--report",
                 str(write_report(tmp_path / "r1.json", make_report_document(wer=0.2))),
                 "--baseline-dir", str(shared)]) == 0
    directory = tmp_path / "b"
    directory.mkdir()
    (directory / "cpu.json").symlink_to(shared / "cpu.json")
    assert main(["baseline", "update", "--report",
                 str(write_report(tmp_path / "r2.json", make_report_document(wer=0.3))),
                 "--baseline-dir", str(directory)]) == 0
    capsys.readouterr()
    assert (directory / "cpu.json").is_symlink()
    stored = json.loads((shared / "cpu.json").read_text())
    assert stored["entries"]["cfg"]["metrics"]["wer"] == 0.3


# -- 5. terminals and logs ------------------------------------------------------------------------

def test_terminal_safe():
    from asrbench.render.text import terminal_safe

    assert terminal_safe("a\x1b[31mred\x1b[0m") == "a\\x1b[31mred\\x1b[0m"
    assert terminal_safe("x\ry\x07\x9b\x7f") == "x\\x0dy\\x07\\x9b\\x7f"
    assert terminal_safe("rtl\u202eevil\u2028") == "rtl\\u202eevil\\u2028"
    assert terminal_safe("two\nlines\tand tab") == "two\nlines\tand tab"
    assert terminal_safe("two\nlines", newlines=False) == "two\\x0alines"
    assert terminal_safe("हिन्दी é ✅") == "हिन्दी é ✅"


def test_control_characters_from_data_never_reach_the_terminal(tmp_path, capsys):
    evil = "\x1b]0;owned\x07\x1b[2J"
    report = write_report(tmp_path / "r.json", make_report_document(commit="abc" + evil,
                                                            predictions={"u1": "hello world"}))
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b")]) == 0
    changed = write_report(tmp_path / "r2.json", make_report_document(
        commit="abc" + evil, predictions={"u1": "hello" + evil + " world"}))
    store = str(tmp_path / "h.sqlite")
    capsys.readouterr()
    main(["compare", "--report", str(changed), "--baseline-dir", str(tmp_path / "b")])
    compare_out = capsys.readouterr().out
    assert "CHANGED" in compare_out and "\\x1b" in compare_out
    assert main(["history", "add", "--report", str(report), "--history", store]) == 0
    add_out = capsys.readouterr().out
    assert "commit abc\\x1b]0;ow" in add_out
    for text in (compare_out, add_out):
        assert "\x1b" not in text and "\x07" not in text


def test_history_list_and_show_escape_control_characters_in_commits_and_ids(tmp_path, capsys):
    """A commit field or a transcript that carries an ANSI sequence is printed escaped by
    `history list` and `history show` (text and --json), never raw (config ids are refused
    unless they are plain names)."""
    import json as _json

    from asrbench.cli.main import main as cli_main

    run = make_run("cfg", predictions={"u1": "a \x1b]0;title\x07 b"})
    report_path = tmp_path / "r.json"
    report_path.write_text(_json.dumps(make_report(run).model_dump(mode="json", by_alias=True)))
    store = tmp_path / "h.sqlite"
    assert cli_main(["history", "add", "--history", str(store), "--report", str(report_path),
                     "--commit", "abc\x1b[31mred", "--branch", "main\x1b[2J"]) == 0
    capsys.readouterr()
    for argv in (["history", "list", "--history", str(store)],
                 ["history", "show", "--history", str(store), "1"],
                 ["history", "show", "--history", str(store), "1", "--json"]):
        code = cli_main(argv)
        out, err = capsys.readouterr()
        assert "\x1b" not in out and "\x1b" not in err and "\x07" not in out, argv
        assert code == 0, err
        if argv[-1] == "--json":
            _json.loads(out)  # still valid JSON

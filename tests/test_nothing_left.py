"""Nothing leaked, nothing left running, one clear line (issue 31, reliability round four):
secrets in every form, checks before work, escaped pytest output, processes and files left
behind by interrupted or killed runs.

Every hostile input ends in ONE line on stderr with exit status 2 and no traceback; every
secret is masked wherever it would be printed, stored or rendered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import os
import sys
from pathlib import Path

import pytest

from asrbench.cli.main import main
from helpers import make_report, write_report

SECRET = "S3cr3t-pw-XYZ"
HF = "hf_" + "Ab1" * 12  # the shape of a Hugging Face token (hf_ and 34+ letters and digits)
GHS = "ghs_" + "Zz9" * 12  # a GitHub Actions installation token


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("asrbench: error: ") and "\n" not in err, err
    assert "Traceback" not in err and "Traceback" not in captured.out, err
    return err


# -- 1. secrets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    (f"PGPASSWORD={SECRET}", "PGPASSWORD=***"),
    (f"--token={HF}", "--token=***"),
    (HF, "***"),
    (f"https://{HF}@huggingface.co/org/model", "https://***@huggingface.co/org/model"),
    (f"https://x-access-token:{GHS}@github.com/o/r/actions/runs/1",
     "https://x-access-token:***@github.com/o/r/actions/runs/1"),
    (f"postgresql://bench:my {SECRET}@db/bench", "postgresql://bench:***@db/bench"),
    (f"host=127.0.0.1 port=1 dbname=db user=bench password={SECRET}",
     "host=127.0.0.1 port=1 dbname=db user=bench password=***"),
    (f"host=h password='my {SECRET}' dbname=db", "host=h password=*** dbname=db"),
    (f"env HF_TOKEN={HF} /path/asrbench run", "env HF_TOKEN=*** /path/asrbench run"),
    # nothing that only looks like a secret's name is touched
    ("--max-new-tokens=24 --tokenizer=t http://localhost:8080/x user=bench",
     "--max-new-tokens=24 --tokenizer=t http://localhost:8080/x user=bench"),
])
def test_one_redaction_helper_masks_every_form(text, expected):
    from asrbench.formats.redact import redact

    assert redact(text) == expected


def test_the_recorded_command_line_masks_option_values_and_tokens(monkeypatch):
    from asrbench.formats.environment import environment

    monkeypatch.setattr(sys, "argv", ["asrbench", "run", "--token", HF, f"--hf-token={HF}",
                                      f"PGPASSWORD={SECRET}", "--history",
                                      f"postgresql://u:a {SECRET}@h/db"])
    argv = environment()["argv"]
    assert SECRET not in json.dumps(argv) and HF not in json.dumps(argv)
    assert argv[:4] == ["asrbench", "run", "--token", "***"]


def test_there_is_one_redaction_helper():
    """The regular expressions that find secrets live in asrbench/formats/redact.py alone."""
    root = Path(__file__).resolve().parent.parent / "asrbench"
    holders = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if "password" in p.read_text(encoding="utf-8")
                     and "re.compile" in p.read_text(encoding="utf-8"))
    assert holders == ["formats/redact.py"]


@pytest.mark.parametrize("command", ["add", "list"])
def test_a_libpq_keyword_string_is_postgresql_never_a_file(tmp_path, capsys, monkeypatch,
                                                           command):
    """`--history "host=... password=..."` (what psql and psycopg accept) is PostgreSQL: no
    file named after it (and its password) appears, and no line holds the password."""
    monkeypatch.chdir(tmp_path)
    report = write_report(tmp_path / "r.json", make_report())
    conninfo = f"host=127.0.0.1 port=1 dbname=db user=bench password={SECRET} connect_timeout=2"
    argv = (["history", "add", "--report", str(report)] if command == "add"
            else ["history", "list"]) + ["--history", conninfo]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert SECRET not in err
    assert "password=***" in err or "psycopg" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_history_path_that_holds_a_password_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = write_report(tmp_path / "r.json", make_report())
    assert main(["history", "add", "--report", str(report), "--history",
                 f"h.sqlite?password={SECRET}"]) == 2
    err = _one_line_error(capsys)
    assert SECRET not in err and "looks like a connection string" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("where", ["option", "environment"])
def test_the_html_url_in_the_markdown_summary_holds_no_token(tmp_path, capsys, monkeypatch,
                                                             where):
    report = write_report(tmp_path / "r.json", make_report())
    url = f"https://x-access-token:{GHS}@github.example/o/r/actions/runs/1"
    extra = ["--html-url", url] if where == "option" else []
    if where == "environment":
        monkeypatch.setenv("ASRBENCH_HTML_URL", url)
    main(["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
          "--allow-missing", "--markdown", str(tmp_path / "s.md"), *extra])
    captured = capsys.readouterr()
    summary = (tmp_path / "s.md").read_text(encoding="utf-8")
    assert "(https://github.example/o/r/actions/runs/1)" in summary
    assert GHS not in summary + captured.out + captured.err


def test_ab_never_prints_the_token_of_a_failing_command(tmp_path, capsys):
    command = f"env HF_TOKEN={HF} {sys.executable} -c 'import sys; sys.exit(3)'"
    code = main(["ab", "--limit", "1", "--json", str(tmp_path / "ab.json"), "--no-progress",
                 "--base-command", command])
    err = _one_line_error(capsys)
    assert code == 2 and HF not in err and "HF_TOKEN=***" in err and "exited 3" in err, err


# -- 2. numbers: every count bounded, refused on loading in one line --------------------------

HUGE = 123456789123  # stands for a 5000-digit integer in the report's text


def _counted_report(value) -> dict:
    document = make_report()
    document["runs"][0]["counters"] = {
        "version": 1, "selection": "s", "rows": 1, "real_rows": 1, "replay_bypassed": False,
        "encoder_calls": 1, "decode_steps": 3, "steady_steps": 2,
        "decode_step_ops": {"aten.mm f32": value}, "flops": 100, "flops_per_utterance": 100,
        "host_syncs": 3, "host_syncs_per_token": 1.0, "tokens": 3}
    return document


def _with_edit(value) -> dict:
    document = make_report()
    document["runs"][0]["utterances"][0]["edits"] = [value, 2, 0, 11, 0, 2]
    return document


@pytest.mark.parametrize("document,expected", [
    (_counted_report(10 ** 400), "an integer of 401 digits"),
    (_counted_report(2 ** 63), "must be <= 9007199254740991"),
    (_with_edit(2 ** 63), "must be <= 9007199254740991"),
    (_counted_report(HUGE), "an integer of 5000 digits"),
    (_with_edit(HUGE), "an integer of 5000 digits"),
], ids=["counter-10^400", "counter-2^63", "edits-2^63", "counter-5000-digits", "edits-5000-digits"])
def test_an_impossible_count_is_refused_in_one_line_everywhere(tmp_path, capsys, document,
                                                              expected):
    report = tmp_path / "r.json"
    # json.dumps cannot write a 5000-digit integer (Python's limit): it goes into the text
    report.write_text(json.dumps(document).replace(str(HUGE), "9" * 5000), encoding="utf-8")
    for argv in (["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
                  "--allow-missing"],
                 ["history", "add", "--report", str(report), "--history",
                  str(tmp_path / "h.sqlite")],
                 ["html", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
                  "--out", str(tmp_path / "page.html")]):
        assert main(argv) == 2, argv
        err = _one_line_error(capsys)
        assert expected in err and str(report) in err, (argv, err)
    assert not (tmp_path / "h.sqlite").exists() and not (tmp_path / "page.html").exists()


def test_the_limit_on_counts_is_exact():
    """2**53 - 1 loads (the largest integer a float holds exactly), 2**53 does not."""
    from asrbench.formats.model import MAX_COUNT, Report

    assert MAX_COUNT == 9007199254740991 == int(float(MAX_COUNT))
    Report.model_validate(_counted_report(MAX_COUNT))
    with pytest.raises(ValueError):
        Report.model_validate(_counted_report(MAX_COUNT + 1))


# -- 3. the pytest door: one line for an invalid report, nothing raw from data ------------------

BENCH_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "test_asr_regression.py"
HOSTILE_OP = "aten.mm\n\x1b[2J\x1b]0;pwned\x07 f32"


def _door_project(root: Path, count: int) -> dict:
    from asrbench.config.settings import BenchConfig

    config = BenchConfig(dataset_config="en", language="english", limit=2).to_dict()
    document = _counted_report(count)
    document["runs"][0]["config"] = config
    document["runs"][0]["counters"]["decode_step_ops"] = {HOSTILE_OP: count}
    shutil.copy(BENCH_FILE, root / "test_bench.py")
    (root / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return document


def _door(root: Path, report: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "test_bench.py", "-p", "no:cacheprovider", "-q", "-rA",
         "--rootdir", str(root), "--asrbench-from-report", report, "--asrbench-baseline-dir",
         str(root / "b"), "--asrbench-throughput", "warn", "--asrbench-report",
         str(root / "out.json")], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_pytest_door_escapes_data_and_refuses_a_bad_report_in_one_line(tmp_path):
    """An op name holding a newline, ESC[2J (clear screen) and an OSC title sequence reaches
    the pytest output escaped; a report with an impossible count is one line (not a 26-line
    collection error)."""
    write_report(tmp_path / "base.json", _door_project(tmp_path, 4))
    assert main(["baseline", "update", "--report", str(tmp_path / "base.json"),
                 "--baseline-dir", str(tmp_path / "b")]) == 0
    write_report(tmp_path / "head.json", _door_project(tmp_path, 5))
    done = _door(tmp_path, "head.json")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "\x1b" not in output and "\x07" not in output
    assert "aten.mm\\x0a\\x1b[2J\\x1b]0;pwned\\x07 f32" in output, output[-3000:]

    write_report(tmp_path / "bad.json", _door_project(tmp_path, 2 ** 63))
    done = _door(tmp_path, "bad.json")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 4 and len(lines) == 1, lines
    assert "must be <= 9007199254740991" in lines[0] and "Traceback" not in lines[0]

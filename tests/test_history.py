"""The results store (asrbench/history/store.py) on SQLite and on a real PostgreSQL server, and the
`asrbench history` commands (asrbench/cli/history.py).

The PostgreSQL tests start a throwaway server from Debian's postgresql package (initdb and
pg_ctl under /usr/lib/postgresql/*/bin; as the `postgres` user when running as root, which
PostgreSQL refuses), on a unix socket in /tmp and a free port on 127.0.0.1, and stop it at the
end. They skip only where those binaries are missing (scripts/setup.sh installs them as root).

Its report documents are hand-built (factories.make_report_document) or real runs of the embedded
default (the `real_history` fixture in conftest.py).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from factories import counters_document, make_report_document, run_cli, write_report

from asrbench.cli.main import main
from asrbench.errors import AsrbenchError
from asrbench.formats.redact import redact_url as redact
from asrbench.history import store as history
from asrbench.history.store import add_report, open_store
from asrbench.render.history import added_line

ROOT = Path(__file__).resolve().parents[1]


# -- a real PostgreSQL server ----------------------------------------------------------------

def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server; yields a function making a fresh database's URL."""
    bindir = _pg_bin()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (install "
                    "Debian's postgresql package; scripts/setup.sh does as root)")
    psycopg = pytest.importorskip("psycopg")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    base = Path(tempfile.mkdtemp(prefix="asrbench-pg-", dir="/tmp"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    prefix: list[str] = []
    if as_root:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                             "asrbench", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    options = (f"-k {sockets} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c full_page_writes=off -c synchronous_commit=off")
    started = subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                       "-l", str(base / "server.log"), "-w", "-t", "60",
                                       "start"], capture_output=True, text=True, timeout=90)
    if started.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log}")
    admin = f"postgresql://asrbench@127.0.0.1:{port}/postgres"
    counter = iter(range(1_000_000))

    def new_database() -> str:
        name = f"history_{next(counter)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # name is ours, not data
        return f"postgresql://asrbench@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A new, empty store on each engine."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_server")()


# -- the store, on both engines ------------------------------------------------------------------

def test_add_stores_every_runs_numbers_and_lists_them_in_order(store_url, tmp_path):
    extra = make_report_document(config_id="other", sps=5.0, wer=0.5,
                        compilations={"counter": "c", "warmup": 3, "passes": [0, 2, 1]})["runs"]
    first = write_report(tmp_path / "r1.json", make_report_document(commit="1" * 40, sps=10.0,
                                                           per_pass=[9.0, 10.0, 11.0],
                                                           extra_runs=extra, branch="main"))
    second = write_report(tmp_path / "r2.json", make_report_document(commit="2" * 40, sps=8.0))
    line = added_line(add_report(store_url, first))
    assert "as #1" in line and "commit 111111111111" in line and "2 run(s)" in line
    assert "as #2" in added_line(add_report(store_url, second))
    with open_store(store_url) as store:
        stored = store.reports()
        assert [s.id for s in stored] == [1, 2] and [s.runs for s in stored] == [2, 1]
        assert stored[0].branch == "main" and stored[0].device_class == "cpu"
        assert stored[0].created == "2026-01-01T00:00:00+00:00" and stored[0].dirty is False
        series = store.series()
        assert set(series) == {("cpu", "cfg"), ("cpu", "other")}
        cfg = series[("cpu", "cfg")]
        assert [p.report_id for p in cfg] == [1, 2]
        assert [p.samples_per_second for p in cfg] == [10.0, 8.0]
        assert cfg[0].samples_per_pass == [9.0, 10.0, 11.0] and cfg[0].passes == 3
        assert cfg[0].wer == 0.2 and cfg[0].cer == 0.1 and cfg[0].utterances == 2
        assert cfg[0].commit == "1" * 40 and cfg[0].compilations_timed is None
        other = series[("cpu", "other")][0]
        assert other.compilations_timed == 3 and other.wer == 0.5  # 0 + 2 + 1 while timed
        # The whole report is kept and loads back as the typed model.
        assert store.load(1).runs[1].config.id == "other"
        assert store.series(config_id="other", up_to=1)[("cpu", "other")][0].report_id == 1


def test_the_same_report_twice_is_refused_and_nothing_is_added(store_url, tmp_path):
    path = write_report(tmp_path / "r.json", make_report_document())
    add_report(store_url, path)
    with pytest.raises(AsrbenchError,
                       match=r"already in history .* as #1 aaaaaaaaaaaa.*added once"):
        add_report(store_url, path)
    # ...even under another commit or from another file: it is the same report.
    copy = write_report(tmp_path / "copy.json", json.loads(path.read_text()))
    with pytest.raises(AsrbenchError, match="already in history"):
        add_report(store_url, copy, commit="b" * 40)
    with open_store(store_url) as store:
        assert len(store.reports()) == 1 and len(store.series()[("cpu", "cfg")]) == 1


def test_a_failed_write_adds_nothing(store_url, tmp_path, monkeypatch):
    path = write_report(tmp_path / "r.json", make_report_document(extra_runs=make_report_document(
        config_id="second")["runs"]))
    real = history._run_row
    calls = []

    def fail_on_second(run):
        calls.append(run.config.id)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(run)

    monkeypatch.setattr(history, "_run_row", fail_on_second)
    with pytest.raises(AsrbenchError, match=r"could not be written \(nothing was added\)"):
        add_report(store_url, path)
    monkeypatch.setattr(history, "_run_row", real)
    with open_store(store_url) as store:  # the report row of the failed add was rolled back
        assert store.reports() == [] and store.series() == {}
    assert "as #" in added_line(add_report(store_url, path))


def test_commit_override_keeps_the_reports_own_commit(store_url, tmp_path):
    inside = write_report(tmp_path / "in.json", make_report_document(commit="c" * 40))
    outside = write_report(tmp_path / "out.json", make_report_document(commit=None, sps=9.0))
    add_report(store_url, inside, commit="d" * 40)
    line = added_line(add_report(store_url, outside))
    assert "no commit (use --commit)" in line
    with open_store(store_url) as store:
        first, second = store.reports()
    assert first.commit == "d" * 40 and first.report_commit == "c" * 40
    assert second.commit is None and second.label == "#2"


def test_find_by_latest_id_and_commit_prefix(store_url, tmp_path):
    commits = ["abcd1234" + "0" * 32, "abcd5678" + "0" * 32, "1234567" + "f" * 33]
    for n, commit in enumerate(commits):
        add_report(store_url, write_report(tmp_path / f"{n}.json",
                                           make_report_document(commit=commit, sps=10.0 + n)))
    with open_store(store_url) as store:
        assert store.find(None).id == 3 and store.find("latest").id == 3
        assert store.find("#2").id == 2 and store.find("2").id == 2
        assert store.find("abcd5").id == 2 and store.find("1234567").id == 3
        with pytest.raises(AsrbenchError, match="ambiguous"):
            store.find("abcd")
        with pytest.raises(AsrbenchError, match="no report #9"):
            store.find("#9")
        with pytest.raises(AsrbenchError, match="no report of commit ffff"):
            store.find("ffff")


def test_interrupted_reports_are_not_history(store_url, tmp_path):
    document = make_report_document()
    document["interrupted"] = True
    with pytest.raises(AsrbenchError, match="interrupted run"):
        add_report(store_url, write_report(tmp_path / "r.json", document))


def test_a_refused_add_leaves_no_new_store_file(tmp_path, capsys):
    """An interrupted run's report, or a counters-only one, is refused before the store is
    opened: `history add` into a store that does not exist yet creates nothing."""
    interrupted = make_report_document()
    interrupted["interrupted"] = True
    untimed = make_report_document()
    run = untimed["runs"][0]
    run["config"]["counters_only"] = True
    run["counters"] = counters_document()
    run["metrics"]["samples_per_second"] = run["throughput"] = None
    for name, document, message in (("interrupted", interrupted, "interrupted run"),
                                     ("untimed", untimed, "counters-only run")):
        url = tmp_path / f"{name}.sqlite"
        report = write_report(tmp_path / f"{name}.json", document)
        with pytest.raises(AsrbenchError, match=message):
            add_report(str(url), report)
        assert main(["history", "add", "--report", str(report), "--history", str(url)]) == 2
        assert message in capsys.readouterr().err
        assert not url.exists(), name


def test_a_store_of_a_newer_schema_is_refused_with_what_to_do(store_url, tmp_path):
    add_report(store_url, write_report(tmp_path / "r.json", make_report_document()))
    with open_store(store_url) as store:
        with store.transaction():
            store._execute("UPDATE meta SET value = ? WHERE key = ?", ("7", "schema_version"))
    with pytest.raises(AsrbenchError) as info:
        with open_store(store_url):
            pass
    message = str(info.value)
    assert "store schema 7" in message and "reads schema 1 and older" in message
    assert "upgrade asrbench" in message and "\n" not in message


def test_an_older_store_is_migrated_in_place(store_url, tmp_path, monkeypatch):
    add_report(store_url, write_report(tmp_path / "r.json", make_report_document()))

    def to_two(store):
        store._execute("ALTER TABLE reports ADD COLUMN note TEXT")

    monkeypatch.setattr(history, "STORE_VERSION", 2)
    monkeypatch.setattr(history, "MIGRATIONS", {1: to_two})
    with open_store(store_url) as store:
        assert store._meta("schema_version") == "2"
        assert store._query("SELECT note FROM reports") == [(None,)]
        assert len(store.reports()) == 1  # the old data reads on


def test_an_older_store_without_a_migration_path_says_so(store_url, tmp_path, monkeypatch):
    add_report(store_url, write_report(tmp_path / "r.json", make_report_document()))
    monkeypatch.setattr(history, "STORE_VERSION", 3)
    monkeypatch.setattr(history, "MIGRATIONS", {})
    with pytest.raises(AsrbenchError, match="store schema 1, which this asrbench cannot migrate"):
        with open_store(store_url):
            pass


# -- SQLite specifics and bad input -----------------------------------------------------------

def test_reading_a_missing_store_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "none.sqlite"
    with pytest.raises(AsrbenchError, match="not found: add a report first"):
        with open_store(missing):
            pass
    assert not missing.exists()
    with pytest.raises(AsrbenchError, match="is a directory"):
        with open_store(tmp_path, create=True):
            pass


def test_a_file_that_is_not_a_store_is_refused_in_one_line(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database " * 100)
    with pytest.raises(AsrbenchError, match="is not an SQLite database"):
        with open_store(text, create=True):
            pass
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(AsrbenchError, match="not an asrbench history store .*things"):
        add_report(other, write_report(tmp_path / "r.json", make_report_document()))
    corrupt = tmp_path / "meta.sqlite"
    with sqlite3.connect(corrupt) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', 'banana')")
    with pytest.raises(AsrbenchError, match="no valid schema_version"):
        with open_store(corrupt):
            pass


def test_history_urls_schemes_and_no_password_in_messages(tmp_path):
    assert history.engine_of("history.sqlite") == ("sqlite", "history.sqlite")
    assert history.engine_of("sqlite:///tmp/h.sqlite") == ("sqlite", "/tmp/h.sqlite")
    assert history.engine_of("postgres://u@h/db")[0] == "postgresql"
    assert redact("postgresql://user:s3cret@db.example:5433/hist?sslmode=require") == \
        "postgresql://user@db.example:5433/hist"
    with pytest.raises(AsrbenchError) as info:
        with open_store("mysql://user:s3cret@host/db"):
            pass
    assert "unknown scheme 'mysql'" in str(info.value) and "s3cret" not in str(info.value)
    # A PostgreSQL server that is not there: one line, and the password is not in it.
    port = _free_port()
    with pytest.raises(AsrbenchError) as info:
        with open_store(f"postgresql://user:s3cret@127.0.0.1:{port}/db"):
            pass
    assert str(info.value).startswith(f"cannot connect to history postgresql://user@127.0.0.1:{port}/db")
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value)


def test_default_history_is_the_environment_or_history_sqlite(monkeypatch):
    monkeypatch.delenv("ASRBENCH_HISTORY", raising=False)
    assert history.default_history() == history.DEFAULT_HISTORY == "history.sqlite"
    monkeypatch.setenv("ASRBENCH_HISTORY", "/x/h.sqlite")
    assert history.default_history() == "/x/h.sqlite"


# -- the commands --------------------------------------------------------------------------------

def test_history_commands(tmp_path, capsys):
    url = str(tmp_path / "h.sqlite")
    for n, sps in enumerate([10.0, 10.1, 9.9, 10.0, 8.0, 8.1, 7.9, 8.0]):
        path = write_report(tmp_path / f"r{n}.json", make_report_document(
            commit=f"{n:x}" * 40, sps=sps, per_pass=[sps * 0.995, sps, sps * 1.005]))
        assert run_cli(["history", "add", "--report", str(path), "--history", url,
                        "--branch", "main"]) == 0
    assert "as #8 (commit 777777777777" in capsys.readouterr().out
    assert run_cli(["history", "list", "--history", url, "--limit", "3"]) == 0
    listing = capsys.readouterr().out
    assert "#6" in listing and "#8" in listing and "#5" not in listing
    assert "3 report(s) shown" in listing
    assert run_cli(["history", "show", "#5", "--history", url]) == 0
    shown = capsys.readouterr().out
    assert "report #5 444444444444" in shown and "branch main" in shown
    row = next(line for line in shown.splitlines() if line.startswith("cfg"))
    assert row.split() == ["cfg", "0.2000", "0.2000", "0.1000", "8", "0.5%", "3", "-"]
    assert run_cli(["history", "show", "--json", "--history", url]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["metrics"]["samples_per_second"] == 8.0
    out_json = tmp_path / "changes.json"
    assert run_cli(["history", "changes", "--history", url, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "REGRESSION" in text and "samples/s" in text and "#5 444444444444" in text
    changes = json.loads(out_json.read_text())["changes"]
    assert [(c["metric"], c["index"], c["direction"]) for c in changes] == \
        [("samples_per_second", 4, "regression")]
    assert changes[0]["relative"] == pytest.approx(-0.2, abs=0.01)
    assert run_cli(["history", "changes", "--history", url, "--metric", "wer"]) == 0
    assert "no persistent step in 1 series" in capsys.readouterr().out
    # --json naming a folder: one line before the scan (it was a traceback after it)
    with pytest.raises(AsrbenchError, match=f"--json {tmp_path} is a directory"):
        run_cli(["history", "changes", "--history", url, "--json", str(tmp_path)])


def test_history_command_errors_are_one_line(tmp_path):
    with pytest.raises(AsrbenchError, match="report .*missing.json not found"):
        run_cli(["history", "add", "--report", str(tmp_path / "missing.json"),
                 "--history", str(tmp_path / "h.sqlite")])
    assert not (tmp_path / "h.sqlite").exists()  # the report is read before the store opens
    with pytest.raises(AsrbenchError, match="not found"):
        run_cli(["history", "list", "--history", str(tmp_path / "none.sqlite")])
    add_report(tmp_path / "h.sqlite", write_report(tmp_path / "r.json", make_report_document()))
    with pytest.raises(AsrbenchError, match="holds no runs of nope"):
        run_cli(["history", "changes", "--history", str(tmp_path / "h.sqlite"),
                 "--config", "nope"])
    with pytest.raises(SystemExit):
        run_cli(["history", "list", "--limit", "0"])


# -- real runs of the embedded default (the session's `real_history`, tests/conftest.py) ----

def test_real_runs_history_holds_every_run_in_order(real_history):
    url, reports, commits = real_history
    with open_store(url) as store:
        stored = store.reports()
        series = store.series()
    assert [s.commit for s in stored] == commits and len(stored) == 6
    ((device_class, config_id), points), = series.items()
    assert device_class == "cpu" and config_id.endswith("-bs4-ml40-n4")
    assert all(p.passes == 2 and p.utterances == 4 for p in points)
    assert len({p.wer for p in points}) == 1  # six copies of one real run (make_real_history)


def test_a_secret_typed_into_commit_or_branch_is_stored_redacted(store_url, tmp_path):
    """`history add --commit/--branch` values are stored and shown (history list/show, the
    HTML): a token pasted into them is masked as in every command line asrbench records."""
    path = write_report(tmp_path / "r.json", make_report_document())
    add_report(store_url, path, commit="deadbeef HF_TOKEN=hf_SECRETBRANCH123456",
               branch="feature password=SECRETPW")
    with open_store(store_url) as store:
        (stored,) = store.reports()
    text = f"{stored.commit} {stored.branch}"
    assert "SECRET" not in text and "deadbeef" in text and "feature" in text, text


def test_list_and_show_keep_each_row_on_its_line(tmp_path, capsys):
    """A branch, a creation date or a report path from data with a newline made `history
    list` print a forged row of its own (and `history show` a forged line); every cell and
    line now shows control characters escaped, as `compare` does for ids."""
    url = str(tmp_path / "h.sqlite")
    forged = "#99 0000000000ff  main   cpu  1  2026  FORGED ROW"
    path = write_report(tmp_path / "a\nFORGED.json", make_report_document(
        branch=f"main\n{forged}", created="2026-01-01\nFORGED DATE"))
    assert run_cli(["history", "add", "--report", str(path), "--history", url]) == 0
    capsys.readouterr()
    assert run_cli(["history", "list", "--history", url]) == 0
    listing = capsys.readouterr().out
    assert not any(line.startswith(("#99", "FORGED")) for line in listing.splitlines())
    assert "main\\x0a#99" in listing and "\\x0aFORGED DATE" in listing
    assert run_cli(["history", "show", "#1", "--history", url]) == 0
    shown = capsys.readouterr().out
    assert not any(line.startswith("FORGED") for line in shown.splitlines()), shown
    assert "a\\x0aFORGED.json" in shown


@pytest.mark.parametrize("column", ["created", "branch", "commit_sha", "source"])
def test_a_store_row_with_a_blob_where_text_belongs_is_one_line(tmp_path, column):
    """A reports row whose text column holds bytes (a damaged or hand-edited SQLite store)
    made `history list` and `show` end in a TypeError traceback; it is the one-line "damaged"
    error now, as a damaged runs row already was."""
    url = str(tmp_path / "h.sqlite")
    path = write_report(tmp_path / "r.json", make_report_document(branch="main"))
    assert run_cli(["history", "add", "--report", str(path), "--history", url]) == 0
    with sqlite3.connect(url) as connection:
        connection.execute(f"UPDATE reports SET {column} = x'00ff'")
    for argv in (["history", "list", "--history", url], ["history", "show", "--history", url]):
        with pytest.raises(AsrbenchError, match=r"the reports row with id 1 is damaged \(bytes "
                                                r"where text belongs\)"):
            run_cli(argv)

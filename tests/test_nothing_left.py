"""Nothing leaked, nothing left running, one clear line (issue 31, reliability round four):
secrets in every form, checks before work, escaped pytest output, processes and files left
behind by interrupted or killed runs.

Every hostile input ends in ONE line on stderr with exit status 2 and no traceback; every
secret is masked wherever it would be printed, stored or rendered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import SECRET, make_report_document, one_line_error, write_report

from asrbench.cli.main import main
from asrbench.formats.model import COUNTER_VERSION

HF = "hf_" + "Ab1" * 12  # the shape of a Hugging Face token (hf_ and 34+ letters and digits)
GHS = "ghs_" + "Zz9" * 12  # a GitHub Actions installation token



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
    report = write_report(tmp_path / "r.json", make_report_document())
    conninfo = f"host=127.0.0.1 port=1 dbname=db user=bench password={SECRET} connect_timeout=2"
    argv = (["history", "add", "--report", str(report)] if command == "add"
            else ["history", "list"]) + ["--history", conninfo]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert SECRET not in err
    assert "password=***" in err or "psycopg" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_history_path_that_holds_a_password_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = write_report(tmp_path / "r.json", make_report_document())
    assert main(["history", "add", "--report", str(report), "--history",
                 f"h.sqlite?password={SECRET}"]) == 2
    err = one_line_error(capsys)
    assert SECRET not in err and "looks like a connection string" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("where", ["option", "environment"])
def test_the_html_url_in_the_markdown_summary_holds_no_token(tmp_path, capsys, monkeypatch,
                                                             where):
    report = write_report(tmp_path / "r.json", make_report_document())
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
    err = one_line_error(capsys)
    assert code == 2 and HF not in err and "HF_TOKEN=***" in err and "exited 3" in err, err


# -- 2. numbers: every count bounded, refused on loading in one line --------------------------

HUGE = 123456789123  # stands for a 5000-digit integer in the report's text


def _counted_report(value) -> dict:
    document = make_report_document()
    document["runs"][0]["counters"] = {
        "version": COUNTER_VERSION, "selection": "s", "rows": 1, "real_rows": 1,
        "replay_bypassed": False,
        "encoder_calls": 1, "decode_steps": 3, "steady_steps": 2,
        "decode_step_ops": {"aten.mm f32": value}, "flops": 100, "flops_per_utterance": 100,
        "host_syncs": 3, "host_syncs_per_token": 1.0, "tokens": 3}
    return document


def _with_edit(value) -> dict:
    document = make_report_document()
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
        err = one_line_error(capsys)
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


# -- 2. checks before work: a broken model folder, the feature cache's room and contents -------

def _break(folder: Path, how: str) -> str:
    """Break a copy of the tiny Whisper as a user's folder gets broken; the expected line."""
    weights = folder / "model.safetensors"
    if how == "truncated weights":
        data = weights.read_bytes()
        weights.write_bytes(data[:len(data) // 3])
        return "model.safetensors is truncated"
    if how == "random weights":
        weights.write_bytes(os.urandom(weights.stat().st_size))
        return "model.safetensors is not a safetensors file or is truncated"
    if how == "no tokenizer":
        for name in ("tokenizer.json", "vocab.json", "merges.txt"):
            (folder / name).unlink()
        return "has no tokenizer files"
    if how == "mel bins":
        config = json.loads((folder / "config.json").read_text())
        config["num_mel_bins"] = 128
        (folder / "config.json").write_text(json.dumps(config))
        return "the model takes 128 mel bins (config.json) but its feature extractor makes 80"
    if how == "no extractor":
        (folder / "preprocessor_config.json").unlink()
        return "has no preprocessor_config.json"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated weights", "random weights", "no tokenizer",
                                 "mel bins", "no extractor"])
def test_a_broken_model_folder_is_one_line_before_anything_loads(tmp_path, capsys, monkeypatch,
                                                                 tiny_whisper, how):
    folder = tmp_path / "model"
    shutil.copytree(tiny_whisper, folder)
    expected = _break(folder, how)
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the folder was checked")

    monkeypatch.setattr(transformers.AutoModelForSpeechSeq2Seq, "from_pretrained", refuse)
    code = main(["run", "--model", str(folder), "--limit", "1", "--passes", "1",
                 "--generation-max-length", "8", "--report", str(tmp_path / "r.json"),
                 "--no-progress"])
    err = one_line_error(capsys)
    assert code == 2 and expected in err and str(folder) in err, err
    assert "huggingface.co" not in err


def test_a_model_file_given_as_the_model_folder_says_so(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["run", "--model", str(tmp_path / "config.json"), "--limit", "1",
                 "--report", str(tmp_path / "r.json"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "is a file, not a model directory" in err and "does not exist" not in err, err


def test_a_bad_sha256_is_named_as_such(tmp_path, capsys):
    document = make_report_document()
    document["runs"][0]["model"] = {"reference": "m", "source": "m", "weights_sha256": "xyz"}
    report = write_report(tmp_path / "r.json", document)
    assert main(["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b"),
                 "--allow-missing"]) == 2
    err = one_line_error(capsys)
    assert "runs[0].model.weights_sha256: expected a sha256 hex digest" in err, err


def _rows(count: int):
    import numpy as np

    from asrbench.measure.data import IndexedRow

    return [IndexedRow(i, f"r{i}", "text", 100 + i,
                       lambda max_seconds=None, i=i: np.full(100 + i, i, dtype=np.float32))
            for i in range(count)]


def _featurize(audio):
    from types import SimpleNamespace

    import torch

    features = torch.tensor([[float(len(a)), float(a[0])] for a in audio])
    return SimpleNamespace(features=[features], order=list(range(len(audio))),
                           mask=lambda index: None)


@pytest.mark.parametrize("change", ["same size", "shorter", "pickle"])
def test_a_feature_cache_file_changed_between_passes_is_one_line(tmp_path, change):
    import numpy as np

    from asrbench.errors import AsrbenchError
    from asrbench.measure.streaming import BatchSource, FeatureCache, plan_batches, prefetch

    rows = _rows(4)
    with FeatureCache(directory=str(tmp_path)) as cache:
        for _ in cache.fill(prefetch(BatchSource(rows, plan_batches(rows, 2), 30.0, _featurize),
                                     workers=0)):
            pass
        first = [f.tolist() for f, _, _ in cache.read()]  # the first pass reads them as written
        stored = cache.path / "1.npy"
        data = stored.read_bytes()
        if change == "same size":  # another process's bytes over ours
            stored.write_bytes(data[:-8] + np.float32([7, 7]).tobytes())
        elif change == "shorter":
            stored.write_bytes(data[:-4])
        else:  # an object array: numpy's own load would say allow_pickle=False
            np.save(stored, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with pytest.raises(AsrbenchError, match=r"1\.npy changed after it was written"):
            list(cache.read())
        # batches longest first: rows 3 and 2, then 1 and 0 (length, first sample)
        assert first == [[[103.0, 3.0], [102.0, 2.0]], [[101.0, 1.0], [100.0, 0.0]]]


def test_caches_of_runs_that_are_gone_are_removed_and_live_ones_kept(tmp_path):
    from asrbench.measure.streaming import FeatureCache

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    orphan = tmp_path / f"asrbench-features-{dead_pid}-abc"
    orphan.mkdir()
    (orphan / "0.npy").write_bytes(b"x" * 1000)
    live = tmp_path / f"asrbench-features-{os.getppid()}-def"  # the parent: alive
    live.mkdir()
    unrelated = tmp_path / "asrbench-features-notapid"
    unrelated.mkdir()
    with FeatureCache(directory=str(tmp_path)) as cache:
        assert cache.path.name.startswith(f"asrbench-features-{os.getpid()}-")
        assert not orphan.exists() and live.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])


@pytest.fixture
def small_tmpdir(tmp_path):
    """A real 64 KiB tmpfs where this process may mount one (root), else None."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_no_room_for_the_feature_cache_is_one_line_before_decoding(tmp_path, capsys, monkeypatch,
                                                                   tiny_whisper, small_tmpdir):
    """A 64 KiB TMPDIR (a real tmpfs where root can mount one, else statvfs says 16 KiB free):
    refused before any clip is decoded, naming what is needed. Also measures what the cache
    takes a clip: Whisper's 80 x 3000 float32 features, 960,000 bytes (0.92 MiB)."""
    import tempfile

    from asrbench.measure import streaming

    if small_tmpdir is None:
        real = os.statvfs

        def statvfs(path):
            got = real(path)
            return os.statvfs_result((got.f_bsize, 4096, got.f_blocks, 4, 4) + tuple(got[5:]))

        monkeypatch.setattr(streaming.os, "statvfs", statvfs)
        small_tmpdir = tmp_path
    monkeypatch.setattr(tempfile, "tempdir", str(small_tmpdir))
    monkeypatch.setattr(streaming.BatchSource, "__getitem__", lambda self, n: pytest.fail(
        "a clip was decoded before the space check"))
    argv = ["run", "--model", str(tiny_whisper), "--limit", "2", "--passes", "1",
            "--generation-max-length", "8", "--report", str(tmp_path / "r.json"), "--no-progress"]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"not enough space for the feature cache in {small_tmpdir}" in err, err
    assert "1.8 MiB needed (2 clip(s), ~0.9 MiB each)" in err, err
    assert list(Path(small_tmpdir).glob("asrbench-features-*")) == []


# -- 4. processes and files left behind: signals sent to real processes ------------------------

ROOT = Path(__file__).resolve().parent.parent

#: a stand-in for `asrbench run`: starts a grandchild, says it is ready, and on SIGTERM
#: records that it could clean up (SIGKILL would leave no such file); with "ignore", it
#: ignores SIGTERM (only SIGKILL ends it)
STUBBORN_RUN = r"""
import os, signal, subprocess, sys, time
folder, mode = sys.argv[1], sys.argv[2]
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
def on_term(number, frame):
    with open(os.path.join(folder, "terminated"), "w") as fh:
        fh.write("cleaned up")
    sys.exit(143)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "ignore" else on_term)
with open(os.path.join(folder, "pids.tmp"), "w") as fh:
    fh.write(f"{os.getpid()} {grandchild.pid}")
os.rename(os.path.join(folder, "pids.tmp"), os.path.join(folder, "pids"))
time.sleep(600)
"""
#: the other side: fails once the first is ready (so the first is ended mid-run, never before
#: its handler is in place: no race)
FAILS_WHEN_READY = r"""
import os, sys, time
while not os.path.exists(os.path.join(sys.argv[1], "pids")):
    time.sleep(0.02)
sys.exit(1)
"""


def _gone(pid: int) -> bool:
    from asrbench.processes import wait_gone

    return wait_gone(pid, 60.0)


@pytest.mark.parametrize("mode", ["cleans up", "ignore"])
def test_ab_ends_a_running_side_with_sigterm_first_and_leaves_no_process(tmp_path, monkeypatch,
                                                                         mode):
    """The A/B runs both sides at once (--cards); one fails, so the other is ended: SIGTERM
    to its process group first (it cleans up), SIGKILL after the grace period only for one
    that ignores SIGTERM; its own child goes with it either way."""
    from asrbench import processes
    from asrbench.ab.rounds import Side, run_together
    from asrbench.errors import AsrbenchError

    monkeypatch.setattr(processes, "GRACE_SECONDS", 1.0 if mode == "ignore" else 60.0)
    running = Side("base", [sys.executable, "-c", STUBBORN_RUN, str(tmp_path), mode])
    failing = Side("head", [sys.executable, "-c", FAILS_WHEN_READY, str(tmp_path)])
    with pytest.raises(AsrbenchError, match="(?s)head: .* run exited 1"):
        run_together([(running, ["run"], None), (failing, ["run"], None)], timeout=600)
    pid, grandchild = (int(p) for p in (tmp_path / "pids").read_text().split())
    assert _gone(pid) and _gone(grandchild)
    assert (tmp_path / "terminated").exists() == (mode == "cleans up")


#: a run killed with SIGKILL while its DataLoader worker featurizes: the worker must die with
#: it, and the run's feature cache (named after its pid) is removed by the next run
KILLED_RUN = r"""
import os, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
from asrbench.measure.data import IndexedRow
from asrbench.measure.streaming import BatchSource, FeatureCache, plan_batches, prefetch
folder = sys.argv[1]
def featurize(audio):
    with open(os.path.join(folder, "worker.tmp"), "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(os.path.join(folder, "worker.tmp"), os.path.join(folder, "worker"))
    time.sleep(600)
rows = [IndexedRow(i, f"r{i}", "t", 100, lambda max_seconds=None: np.zeros(100, np.float32))
        for i in range(2)]
cache = FeatureCache(directory=folder)
for _ in cache.fill(prefetch(BatchSource(rows, plan_batches(rows, 1), 30.0, featurize), 1)):
    pass
"""


def test_a_run_killed_with_sigkill_leaves_no_worker_and_its_cache_goes_next_time(tmp_path):
    import signal
    import time

    from asrbench.measure.streaming import FeatureCache

    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path), str(ROOT)])
    try:
        while not (tmp_path / "worker").exists():
            assert child.poll() is None, "the run ended before its worker started"
            time.sleep(0.05)
        worker = int((tmp_path / "worker").read_text())
        left = list(tmp_path.glob(f"asrbench-features-{child.pid}-*"))
        assert len(left) == 1
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert _gone(worker), "the DataLoader worker outlived its run"
    finally:
        child.kill()
        child.wait()
    assert left[0].exists()  # SIGKILL: nothing could remove it ...
    with FeatureCache(directory=str(tmp_path)):
        assert not left[0].exists()  # ... the next run does


#: measure.py of the bisect repository: copies the commit's report; at the commit that holds
#: a file named "block" it says where it is and waits (the measurement a signal interrupts)
BLOCKING_MEASURE = r"""
import os, shutil, sys, time
if os.path.exists("block"):
    folder = os.environ["ASRBENCH_TEST_MARKERS"]
    with open(os.path.join(folder, "measuring.tmp"), "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(os.path.join(folder, "measuring.tmp"), os.path.join(folder, "measuring"))
    time.sleep(600)
shutil.copy("report.json", sys.argv[1])
"""


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("name,to_group", [("SIGINT", True), ("SIGTERM", False),
                                           ("SIGHUP", False)])
def test_a_signal_to_bisect_ends_its_whole_tree_and_removes_its_worktree(tmp_path, name,
                                                                         to_group):
    """`git bisect run` is measuring the middle commit when the signal comes (Ctrl-C to the
    terminal's process group, SIGTERM or SIGHUP to asrbench): asrbench exits with one line,
    no traceback, and leaves no process (git, the step, the measurement), no worktree
    registered in the repository and no temporary folder."""
    import signal
    import time

    from test_bisect import git, report_text

    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    for number, (mm, block) in enumerate([(10, False), (10, True), (12, False)], start=1):
        (repo / "measure.py").write_text(BLOCKING_MEASURE)
        (repo / "report.json").write_text(report_text(mm))
        if block:
            (repo / "block").write_text("")
        elif (repo / "block").exists():
            (repo / "block").unlink()
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", f"commit {number}")
    first, last = git(repo, "rev-list", "--max-parents=0", "HEAD"), git(repo, "rev-parse", "HEAD")
    temporary, markers = tmp_path / "tmp", tmp_path / "markers"
    temporary.mkdir()
    markers.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "ASRBENCH_TEST_MARKERS": str(markers),
           "PYTHONPATH": str(ROOT)}
    bisect = subprocess.Popen(
        [sys.executable, "-m", "asrbench", "bisect", first, last, "--repo", str(repo),
         "--command", f"{sys.executable} measure.py {{report}}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        while not (markers / "measuring").exists():
            assert bisect.poll() is None, bisect.communicate()
            time.sleep(0.05)
        number = getattr(signal, name)
        if to_group:
            os.killpg(bisect.pid, number)
        else:
            os.kill(bisect.pid, number)
        out, err = bisect.communicate(timeout=300)
    finally:
        if bisect.poll() is None:
            os.killpg(bisect.pid, signal.SIGKILL)
            bisect.wait()
    assert bisect.returncode == 128 + number, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"asrbench bisect: interrupted ({name})", err
    assert _gone(int((markers / "measuring").read_text()))
    deadline = time.monotonic() + 60
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(tmp_path)) == []  # git bisect run, the step, ...
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert list(temporary.iterdir()) == []

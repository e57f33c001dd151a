"""No run thrown away, nothing let in (issue 11): settings checked before any model loads,
interrupted runs keep what they finished, unwritable outputs go elsewhere, and hostile gate
inputs are one-line errors (exit 2) naming the file and the field."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from asrbench.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
OLD_REPORT = Path(__file__).resolve().parent / "data" / "report-v0.1.0-schema1.json"


def _report(mutate=None) -> dict:
    document = json.loads(OLD_REPORT.read_text())
    if mutate:
        mutate(document)
    return document


def _write(tmp_path: Path, document: dict, name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, allow_nan=True))
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("asrbench: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -- gate inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate,field", [
    (lambda r: r["runs"][0]["metrics"].update(samples_per_second=float("nan")),
     "runs[0].metrics.samples_per_second"),
    (lambda r: r["runs"][0]["metrics"].update(wer=float("inf")), "runs[0].metrics.wer"),
    (lambda r: r["runs"][0]["metrics"].update(cer=-0.5), "runs[0].metrics.cer"),
    (lambda r: r["runs"][0]["throughput"].update(samples_per_second_per_pass=[1.0, float("inf")]),
     "runs[0].throughput.samples_per_second_per_pass"),
    (lambda r: r["runs"][0].update(throughput=[1.0, 2.0]), "runs[0].throughput"),
    (lambda r: r["environment"].update(packages="torch 2"), "environment.packages"),
    (lambda r: r.update(runs=[]), "the report holds no runs"),
])
def test_hostile_reports_are_refused_by_compare_and_baseline_update(tmp_path, capsys, mutate,
                                                                    field):
    path = _write(tmp_path, _report(mutate))
    assert main(["compare", "--report", str(path), "--baseline-dir", str(tmp_path / "b")]) == 2
    assert field in _one_line_error(capsys)
    assert main(["baseline", "update", "--report", str(path), "--baseline-dir",
                 str(tmp_path / "b")]) == 2
    assert field in _one_line_error(capsys)
    assert not (tmp_path / "b").exists()


def test_a_baseline_with_negative_throughput_cannot_switch_the_gate_off(tmp_path, capsys):
    report = _write(tmp_path, _report())
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b")]) == 0
    path = tmp_path / "b" / "cpu.json"
    document = json.loads(path.read_text())
    (entry,) = document["entries"].values()
    entry["metrics"]["samples_per_second"] = -1.0
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b")]) == 2
    assert "metrics.samples_per_second: must be > 0" in _one_line_error(capsys)


def test_a_device_class_that_is_a_path_never_writes_outside_the_baseline_directory(tmp_path,
                                                                                  capsys):
    path = _write(tmp_path,
                  _report(lambda r: r["runs"][0]["device"].update({"class": "../escaped"})))
    assert main(["baseline", "update", "--report", str(path), "--baseline-dir",
                 str(tmp_path / "b")]) == 2
    assert "runs[0].device.class" in _one_line_error(capsys)
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "b").exists()


def test_a_baseline_directory_that_cannot_be_written_is_a_one_line_error(tmp_path, capsys):
    """A file where the directory should be (what root meets instead of a read-only
    directory, which root may write anyway)."""
    blocker = tmp_path / "b"
    blocker.write_text("not a directory")
    assert main(["baseline", "update", "--report", str(_write(tmp_path, _report())),
                 "--baseline-dir", str(blocker)]) == 2
    assert "cannot write baseline file" in _one_line_error(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories anyway; "
                                              "the test above covers the same error path")
def test_a_read_only_baseline_directory_is_a_one_line_error(tmp_path, capsys):
    directory = tmp_path / "b"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        assert main(["baseline", "update", "--report", str(_write(tmp_path, _report())),
                     "--baseline-dir", str(directory)]) == 2
        assert "cannot write baseline file" in _one_line_error(capsys)
    finally:
        directory.chmod(0o700)


def test_a_directory_where_the_baseline_file_should_be_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "b" / "cpu.json").mkdir(parents=True)
    report = _write(tmp_path, _report())
    assert main(["compare", "--report", str(report), "--baseline-dir", str(tmp_path / "b")]) == 2
    assert "cannot be read" in _one_line_error(capsys)
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b")]) == 2
    _one_line_error(capsys)


def test_rewriting_a_baseline_keeps_its_mode_and_leaves_no_temp_file(tmp_path):
    report = _write(tmp_path, _report())
    args = ["baseline", "update", "--report", str(report), "--baseline-dir", str(tmp_path / "b")]
    assert main(args) == 0
    path = tmp_path / "b" / "cpu.json"
    path.chmod(0o640)
    assert main(args) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == ["cpu.json", "cpu.json.lock"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "baselines/.cpu.json.x1y2.tmp"],
                             cwd=ROOT)
    assert ignored.returncode == 0  # a temp file a killed writer left is never committed


# -- settings checked before any model loads -----------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--max-duration", "nan"], "max duration must be a finite number"),
    (["--max-duration", "inf"], "max duration must be a finite number"),
    (["--max-duration", "60"], "beyond the 30 s the model's feature extractor takes"),
    (["--generation-max-length", "100000"], "beyond the model's 448 decoder positions"),
])
def test_impossible_settings_fail_before_the_run(tmp_path, capsys, monkeypatch, args, message):
    from asrbench.measure import session

    loaded = []
    monkeypatch.setattr(session, "load", lambda reference: loaded.append(reference))
    report = tmp_path / "r.json"
    assert main(["run", "--dataset-config", "en", "--limit", "1", "--no-progress",
                 "--report", str(report), *args]) == 2
    assert message in _one_line_error(capsys)
    assert not report.exists()
    assert loaded == []  # refused up front: no model was ever loaded


def test_a_bad_later_run_in_a_config_file_is_refused_before_the_first_run(tmp_path, capsys):
    config = tmp_path / "runs.toml"
    config.write_text('dataset_config = "en"\nlimit = 1\n[[runs]]\nbatch_size = 2\n'
                      '[[runs]]\nbatch_size = 8.0\n')
    report = tmp_path / "r.json"
    assert main(["run", "--config", str(config), "--no-progress", "--report", str(report)]) == 2
    assert "setting batch_size must be int, got float 8.0" in _one_line_error(capsys)
    assert not report.exists()


def test_a_report_path_that_is_a_directory_is_refused_before_the_run(tmp_path, capsys):
    assert main(["run", "--dataset-config", "en", "--limit", "1", "--no-progress",
                 "--report", str(tmp_path)]) == 2
    assert "is a directory" in _one_line_error(capsys)


def test_an_unwritable_report_is_saved_elsewhere_and_says_where(tmp_path, capsys, monkeypatch,
                                                                 tiny_whisper):
    """(The tiny random Whisper: where the report goes is tested, not transcripts.)"""
    from asrbench.formats import io as report_module

    target = tmp_path / "r.json"
    real = report_module.write_report

    def refuse_target(path, document):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied")
        real(path, document)

    monkeypatch.setattr(report_module, "write_report", refuse_target)
    code = main(["run", "--dataset-config", "en", "--limit", "1", "--passes", "1",
                 "--model", str(tiny_whisper), "--generation-max-length", "16", "--no-progress",
                 "--report", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and f"could not write {target} (Permission denied)" in err
    saved = Path(err.split("the report was saved to ")[1].split()[0])
    assert json.loads(saved.read_text())["runs"][0]["config"]["limit"] == 1


def test_an_offline_hub_model_fails_at_once(monkeypatch):
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    from asrbench.errors import AsrbenchError
    from asrbench.measure import models

    probes, downloads = [], []
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the probe is what is tested
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(models, "hub_reachable",
                        lambda timeout=3.0: probes.append(timeout) or False)
    for auto in (AutoProcessor, AutoModelForSpeechSeq2Seq):
        monkeypatch.setattr(auto, "from_pretrained",
                            lambda *args, **kwargs: downloads.append(args))
    with pytest.raises(AsrbenchError, match="not in the local Hugging Face cache and the Hub "
                                            "cannot be reached"):
        models.load("someone/no-such-model-in-any-cache")
    # one probe of the Hub, then the error: no download (with its minutes of retries) begun
    assert len(probes) == 1 and downloads == []


@pytest.mark.parametrize("variable,value", [("HF_HUB_OFFLINE", "1"), ("HF_HUB_OFFLINE", "yes"),
                                            ("HF_HUB_OFFLINE", "True"),
                                            ("TRANSFORMERS_OFFLINE", "ON")])
def test_offline_mode_refuses_an_uncached_hub_model_without_probing(monkeypatch, variable,
                                                                     value):
    """Offline mode as huggingface_hub reads it (not only "1"): the error names it, and
    nothing tries the network."""
    from asrbench.errors import AsrbenchError
    from asrbench.measure import models

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: pytest.fail("probed"))
    with pytest.raises(AsrbenchError, match="offline mode is on"):
        models.load("someone/no-such-model-in-any-cache")


@pytest.mark.parametrize("environ,offline", [
    ({}, False), ({"HF_HUB_OFFLINE": "0"}, False), ({"HF_HUB_OFFLINE": "1"}, True),
    ({"HF_HUB_OFFLINE": "true"}, True), ({"TRANSFORMERS_OFFLINE": "1"}, True),
    # huggingface_hub reads TRANSFORMERS_OFFLINE only where HF_HUB_OFFLINE is unset or empty
    ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, False),
    ({"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "yes"}, True),
    ({"HF_DATASETS_OFFLINE": "1"}, False),  # datasets' own variable: not transformers'
])
def test_offline_mode_is_read_as_huggingface_hub_reads_it(environ, offline):
    from asrbench.measure.reach import hub_offline_requested

    assert hub_offline_requested(environ) is offline


# -- interruptions ----------------------------------------------------------------------------

SIGNAL_DURING_SECOND_RUN = r"""
import os, signal, sys, time
from asrbench.measure.session import Session
from asrbench.cli.main import main

calls = []
original = Session.evaluate

def evaluate(self, config, passes):
    calls.append(config.id)
    if len(calls) == 2:  # the second config: a signal arrives while it runs
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(30)
    return original(self, config, passes)

Session.evaluate = evaluate
sys.exit(main(["run", "--limit", "1", "--passes", "1", "--generation-max-length", "16",
               "--model", sys.argv[3], "--no-progress", "--report", sys.argv[2]]))
"""


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGINT", 130), ("SIGHUP", 129)])
def test_a_signal_during_the_second_run_keeps_the_first(tmp_path, name, code, capsys,
                                                       tiny_whisper):
    """The default run's two configs on the tiny random Whisper (the signal handling is
    tested, not transcripts). SIGHUP: a closed terminal or ssh session, which used to end the
    run at once with nothing written."""
    report = tmp_path / "r.json"
    report.write_text('{"stale": "a report from an earlier run"}')
    proc = subprocess.run([sys.executable, "-c", SIGNAL_DURING_SECOND_RUN, name, str(report),
                           str(tiny_whisper)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == code, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("asrbench:")]
    assert lines == [f"asrbench: interrupted ({name}) after 1 of 2 run(s); the finished runs are "
                     f"in {report}, marked interrupted"]
    document = json.loads(report.read_text())
    assert document["interrupted"] is True and len(document["runs"]) == 1
    assert document["runs"][0]["config"]["dataset_config"] == "hi"
    # such a report is a record, not something to gate on
    assert main(["compare", "--report", str(report), "--baseline-dir", str(tmp_path)]) == 2
    assert "interrupted run" in capsys.readouterr().err


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """`nohup asrbench run &` must outlive the terminal: raise_on leaves a signal that was
    ignored at start-up ignored (a shell's background job ignores SIGINT the same way)."""
    import signal

    from asrbench import processes

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        installed = processes.raise_on((signal.SIGHUP, signal.SIGTERM))
        try:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.SIGHUP not in installed and signal.SIGTERM in installed
        finally:
            processes.restore(installed)
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_output_path_that_is_a_device_or_fifo_is_never_replaced(tmp_path, capsys, kind):
    """An atomic write renames a new file over its target: run as root with --report /dev/null,
    it replaced the system's /dev/null with a JSON file. Outputs that are devices, FIFOs or
    sockets are refused up front (one line) and by the writer itself (an OSError, which a run
    meets by saving its report elsewhere); the node is left as it was."""
    from asrbench.formats.io import write_text_atomic

    if kind == "fifo":
        node = tmp_path / "fifo"
        os.mkfifo(node)
        kind_name = "a FIFO"
    else:
        node = tmp_path / "null-link"
        node.symlink_to(os.devnull)  # the real /dev/null, through a link: never written
        kind_name = "a character device"
    before = os.stat(node).st_mode
    assert main(["run", "--dataset-config", "en", "--limit", "1", "--no-progress",
                 "--report", str(node)]) == 2
    assert f"is {kind_name}, which a write would replace" in _one_line_error(capsys)
    with pytest.raises(OSError, match="not a regular file"):
        write_text_atomic(node, "{}")
    assert os.stat(node).st_mode == before


def test_an_id_part_with_no_ascii_letter_still_makes_a_valid_id():
    """A model folder named "日本" (or ".cache") gave an id starting with "-": the run ended,
    and compare, history and the pytest door then refused its report."""
    import re

    from asrbench.config.settings import BenchConfig
    from asrbench.formats.model import NAME_PATTERN

    ids = {name: BenchConfig(model=f"/models/{name}").derived_id()
           for name in ("日本", "中文", ".cache", "whisper-base")}
    assert all(re.match(NAME_PATTERN, i) for i in ids.values()), ids
    assert ids["日本"] != ids["中文"]  # different folders stay apart
    assert ids[".cache"].startswith("cache-")
    assert ids["whisper-base"].startswith("whisper-base-")  # ids that were valid are unchanged


def test_an_error_quoting_a_secret_the_user_gave_is_redacted(capsys):
    """A model URL with a password in it is quoted by the error that refuses it; the one line
    printed (and kept in CI logs) masks the password."""
    assert main(["run", "--model", "https://user:SECRETMODEL@host/model", "--limit", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "SECRETMODEL" not in err and "asrbench: error:" in err, err
    # argparse's usage error quotes an unknown option's value
    with pytest.raises(SystemExit):
        main(["run", "--token", "hf_SECRETCLI12345"])
    err = capsys.readouterr().err
    assert "SECRETCLI" not in err and "unrecognized arguments: --token ***" in err, err


def test_a_bad_hf_endpoint_port_is_unreachable_not_a_traceback(monkeypatch):
    from asrbench.measure.reach import hub_reachable

    for endpoint in ("https://mirror.invalid:99999", "https://mirror.invalid:8x"):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        assert hub_reachable(timeout=0.1) is False


def test_a_report_whose_device_class_is_a_path_is_refused(tmp_path):
    """environment.device.class names the history's device series: a plain name, as every
    run's device.class is ("../etc" was accepted)."""
    from factories import door_report_document

    from asrbench.errors import AsrbenchError
    from asrbench.formats.io import load_report

    document = door_report_document()
    document["environment"]["device"]["class"] = "../etc"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AsrbenchError, match="device.class '../etc' is not a plain name"):
        load_report(path)
    # git facts the history, the HTML and the exports read as text and a flag (an integer
    # commit crashed `asrbench html`; dirty "no" was stored as dirty)
    for field, value, message in (("commit", 1234567, "git.commit must be text"),
                                  ("dirty", "no", "git.dirty must be true or false")):
        document = door_report_document()
        document["environment"]["git"] = {field: value}
        path.write_text(json.dumps(document))
        with pytest.raises(AsrbenchError, match=message):
            load_report(path)


def test_a_reader_that_leaves_early_is_no_traceback(tmp_path):
    """`asrbench compare ... | head -1`: the pipe closes while asrbench writes. It used to end
    in a BrokenPipeError traceback; now it ends quietly (exit 1), as Unix tools do."""
    from factories import door_report_document

    report = tmp_path / "r.json"
    report.write_text(json.dumps(door_report_document()))
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(tmp_path / "b")]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "asrbench", "compare", "--report",
                             str(report), "--baseline-dir", str(tmp_path / "b")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text and "BrokenPipeError" not in text, text
    assert proc.returncode == 1


def test_a_signal_before_any_run_finished_leaves_the_previous_report(tmp_path, tiny_whisper):
    """Ctrl-C right after starting used to replace the last run's report (the default
    reports/latest.json) with an empty one; nothing finished, so nothing is written."""
    report = tmp_path / "r.json"
    report.write_text('{"earlier": "a good report"}')
    script = SIGNAL_DURING_SECOND_RUN.replace("len(calls) == 2", "len(calls) == 1")
    proc = subprocess.run([sys.executable, "-c", script, "SIGTERM", str(report),
                           str(tiny_whisper)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert report.read_text() == '{"earlier": "a good report"}'
    assert f"asrbench: interrupted (SIGTERM) after 0 of 2 run(s); no report written ({report} " \
        "is left as it was)" in proc.stderr, proc.stderr[-2000:]


def test_an_error_in_a_later_config_keeps_the_runs_that_finished(tmp_path, capsys, monkeypatch,
                                                                 tiny_whisper):
    """A one-line user error in the second config (an empty shard of its split, say) used to
    end the run with nothing written: the first config's finished run was lost."""
    from asrbench.errors import AsrbenchError
    from asrbench.measure.session import Session

    real = Session.evaluate
    calls = []

    def evaluate(self, config, passes):
        calls.append(config.id)
        if len(calls) == 2:
            raise AsrbenchError("shard 3/4 of this split is empty")
        return real(self, config, passes)

    monkeypatch.setattr(Session, "evaluate", evaluate)
    report = tmp_path / "r.json"
    code = main(["run", "--limit", "1", "--passes", "1", "--generation-max-length", "16",
                 "--model", str(tiny_whisper), "--no-progress", "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"asrbench: error: shard 3/4 of this split is empty; stopped after 1 of 2 run(s); "
            f"the finished runs are in {report}, marked interrupted") in err, err
    document = json.loads(report.read_text())
    assert document["interrupted"] is True and len(document["runs"]) == 1

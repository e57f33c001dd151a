"""Baseline files (asrbench/gate/baselines.py): validation, digests, atomic locked updates, and the
`asrbench baseline update` command."""

from __future__ import annotations

import json
import os

import pytest
from factories import make_entry_document as _entry
from factories import make_run_document as _run

from asrbench.errors import AsrbenchError
from asrbench.formats.model import COUNTER_VERSION
from asrbench.gate.baselines import load, predictions_digest, validate


def test_predictions_digest_ignores_order():
    assert predictions_digest({"a": "x", "b": "y"}) == predictions_digest({"b": "y", "a": "x"})
    assert predictions_digest({"a": "x"}) != predictions_digest({"a": "y"})


def _document(entry):
    return {"schema": 1, "device_class": "cpu", "entries": {"cfg": entry}}


@pytest.mark.parametrize("mutate, field", [
    (lambda e: e["metrics"].pop("cer"), "entries['cfg'].metrics.cer: missing"),
    (lambda e: e["metrics"].update(wer="x"), "entries['cfg'].metrics.wer: expected a number"),
    (lambda e: e["tolerance"].update(wer_pct=1), "entries['cfg'].tolerance.wer_pct: unknown"),
    (lambda e: e["tolerance"].update(wer_abs=-1), "entries['cfg'].tolerance.wer_abs: must be >= 0"),
    (lambda e: e["predictions"].update(a="tampered"),
     "entries['cfg']: predictions_sha256 does not match"),
    (lambda e: e.update(predictions_sha256="abc"), "predictions_sha256: expected a sha256"),
])
def test_baseline_validation_names_file_and_field(tmp_path, mutate, field):
    entry = _entry(_run())
    mutate(entry)
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(_document(entry)))
    with pytest.raises(AsrbenchError, match="invalid baseline file") as info:
        load(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_baseline_schema_version_is_checked(tmp_path):
    with pytest.raises(AsrbenchError, match="schema"):
        validate({"schema": 2, "device_class": "cpu", "entries": {}}, tmp_path / "x.json")
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(AsrbenchError, match="not valid JSON"):
        load(path)


def _report_file(tmp_path, runs):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema": 1, "environment": {"packages": {"torch": "x"}},
                                "runs": runs}))
    return path


def _named(run, config_id, wer=0.2):
    run = json.loads(json.dumps(run))
    run["config"]["id"] = config_id
    run["metrics"]["wer"] = wer
    return run


def test_baseline_update_command_rewrites_only_selected_entries_and_keeps_others(tmp_path, capsys):
    from asrbench.cli.main import main

    directory = tmp_path / "baselines"
    first = _report_file(tmp_path, [_named(_run(), "a", 0.2), _named(_run(), "b", 0.3)])
    assert main(["baseline", "update", "--report", str(first), "--baseline-dir",
                 str(directory), "--tolerance", "samples_per_second_rel=0.4"]) == 0
    document = json.loads((directory / "cpu.json").read_text())
    assert set(document["entries"]) == {"a", "b"}
    assert document["entries"]["a"]["tolerance"] == {"samples_per_second_rel": 0.4}
    b_before = (directory / "cpu.json").read_text()
    second = _report_file(tmp_path, [_named(_run(), "a", 0.25), _named(_run(), "b", 0.9)])
    assert main(["baseline", "update", "--report", str(second), "--baseline-dir",
                 str(directory), "--only", "a"]) == 0
    after = json.loads((directory / "cpu.json").read_text())["entries"]
    assert after["a"]["metrics"]["wer"] == 0.25
    assert after["a"]["tolerance"] == {"samples_per_second_rel": 0.4}  # the override is kept
    assert after["b"] == json.loads(b_before)["entries"]["b"]  # not selected: untouched
    printed = capsys.readouterr().out
    assert "wer" in printed and "0.2" in printed and "0.25" in printed  # the old -> new table
    # user errors: an unknown id, a bad tolerance, each one line and exit 2
    assert main(["baseline", "update", "--report", str(second), "--baseline-dir",
                 str(directory), "--only", "zzz"]) == 2
    assert main(["baseline", "update", "--report", str(second), "--baseline-dir",
                 str(directory), "--tolerance", "wer_abs=lots"]) == 2
    assert main(["baseline", "update", "--report", str(second), "--baseline-dir",
                 str(directory), "--tolerance", "speed=1"]) == 2
    assert "unknown tolerance" in capsys.readouterr().err


def test_update_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    """A failure while writing leaves the old file intact and no temp file behind."""
    from asrbench.cli.main import main
    from asrbench.gate import baselines

    directory = tmp_path / "baselines"
    report = _report_file(tmp_path, [_named(_run(), "a", 0.2)])
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(directory)]) == 0
    before = (directory / "cpu.json").read_bytes()

    def broken_fsync(*args, **kwargs):  # the temp file exists and is half written
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(AsrbenchError,
                       match="cannot write baseline file .*cpu.json \\(disk full\\)"):
        baselines.update(directory, "cpu", [_named(_run(), "a", 0.5)], {}, None)
    assert (directory / "cpu.json").read_bytes() == before
    assert [p.name for p in directory.iterdir() if p.suffix == ".tmp"] == []


def _report_named(tmp_path, name, runs):
    path = _report_file(tmp_path, runs)
    return path.rename(tmp_path / name)


def test_baseline_from_several_processes_keeps_each_process_and_its_spread(tmp_path, capsys):
    from asrbench.cli.main import main

    paths = [_report_named(tmp_path, f"r{i}.json", [_named(_run(rates=rates), "a")])
             for i, rates in enumerate([(10.0, 10.1, 9.9), (11.0, 11.1, 10.9), (9.0, 9.1, 8.9)])]
    directory = tmp_path / "baselines"
    assert main(["baseline", "update", "--report", *map(str, paths),
                 "--baseline-dir", str(directory)]) == 0
    entry = json.loads((directory / "cpu.json").read_text())["entries"]["a"]
    assert entry["noise"]["samples_per_second_per_process"] == [10.0, 11.0, 9.0]
    assert entry["metrics"]["samples_per_second"] == 10.0  # median of the processes' medians
    assert len(entry["noise"]["samples_per_second_per_pass"]) == 9
    assert "recorded from 3 processes" in capsys.readouterr().out


def test_baseline_from_several_processes_refuses_reports_that_disagree(tmp_path, capsys):
    from asrbench.cli.main import main

    one = _report_named(tmp_path, "one.json", [_named(_run(), "a")])
    other = _report_named(tmp_path, "other.json",
                          [_named(_run(predictions={"a": "something else"}), "a")])
    missing = _report_named(tmp_path, "missing.json", [_named(_run(), "b")])
    directory = tmp_path / "baselines"
    assert main(["baseline", "update", "--report", str(one), str(other),
                 "--baseline-dir", str(directory)]) == 2
    assert "report 2 disagrees with report 1 on 1 transcript(s)" in capsys.readouterr().err
    assert main(["baseline", "update", "--report", str(one), str(missing),
                 "--baseline-dir", str(directory)]) == 2
    assert "report 2 has no run of a" in capsys.readouterr().err
    assert not (directory / "cpu.json").exists()  # nothing written on a refusal


def test_baseline_from_several_processes_refuses_one_run_given_twice(tmp_path, capsys):
    """The same report twice (or a copy of it) is one process, not two: taken as two, the
    spread between "processes" is 0 and the throughput band shrinks to its floor (5%), so a
    later run 6% slower fails. Refused in one line; separate processes' runs are recorded."""
    import shutil

    from asrbench.cli.main import main

    one = _report_named(tmp_path, "one.json", [_named(_run(rates=(10.0, 10.1, 9.9)), "a")])
    copy = tmp_path / "copy.json"
    shutil.copyfile(one, copy)
    directory = tmp_path / "baselines"
    for twice in ([one, one], [one, copy]):
        assert main(["baseline", "update", "--report", *map(str, twice),
                     "--baseline-dir", str(directory)]) == 2
        assert "report 2 holds the very run of report 1" in capsys.readouterr().err
    assert not (directory / "cpu.json").exists()
    other = _report_named(tmp_path, "other.json", [_named(_run(rates=(10.2, 10.0, 9.8)), "a")])
    assert main(["baseline", "update", "--report", str(one), str(other),
                 "--baseline-dir", str(directory)]) == 0


def _counted(run, step_mm):
    """A run dict with hand-made counters (`step_mm` aten.mm per decode step)."""
    run = json.loads(json.dumps(run))
    run["counters"] = {"version": COUNTER_VERSION, "selection": "s", "rows": 1, "real_rows": 1,
                       "replay_bypassed": False, "encoder_calls": 1, "decode_steps": 3,
                       "steady_steps": 2, "decode_step_ops": {"aten.mm f32": step_mm},
                       "flops": 100, "flops_per_utterance": 100, "host_syncs": 3,
                       "host_syncs_per_token": 1.0, "tokens": 3}
    return run


def test_counters_only_adds_the_counts_and_keeps_every_other_field(tmp_path, capsys):
    """`baseline update --counters-only`: the counts of a run whose throughput must not become
    the baseline (a loaded runner, one pass) go into the existing entry; nothing else moves."""
    from asrbench.cli.main import main

    directory = tmp_path / "baselines"
    recorded = _report_named(tmp_path, "recorded.json", [_named(_run(), "a")])
    assert main(["baseline", "update", "--report", str(recorded), "--baseline-dir",
                 str(directory), "--tolerance", "samples_per_second_rel=0.4"]) == 0
    before = json.loads((directory / "cpu.json").read_text())["entries"]["a"]
    assert before.get("counters") is None
    capsys.readouterr()
    slow = _report_named(tmp_path, "slow.json",
                         [_counted(_named(_run(rates=(2.0, 2.1, 1.9)), "a", wer=0.2), 7)])
    assert main(["baseline", "update", "--report", str(slow), "--baseline-dir", str(directory),
                 "--counters-only"]) == 0
    after = json.loads((directory / "cpu.json").read_text())["entries"]["a"]
    assert after["counters"]["decode_step_ops"] == {"aten.mm f32": 7}
    assert {k: v for k, v in after.items() if k != "counters"} == \
        {k: v for k, v in before.items() if k != "counters"}  # samples/s 10, not 2: kept
    assert "counters: recorded (7 ops per decode step" in capsys.readouterr().out
    # a second recording with other counts says what moved
    more = _report_named(tmp_path, "more.json", [_counted(_named(_run(), "a"), 9)])
    assert main(["baseline", "update", "--report", str(more), "--baseline-dir", str(directory),
                 "--counters-only"]) == 0
    assert "aten.mm f32 7 -> 9 (+2)" in capsys.readouterr().out
    # moved where no counter verdict compares (a shorter decode: steps and tokens) is said,
    # never "counters: unchanged"
    shorter = _counted(_named(_run(), "a"), 9)
    shorter["counters"].update(decode_steps=13, steady_steps=12, tokens=13)
    shorter_report = _report_named(tmp_path, "shorter.json", [shorter])
    assert main(["baseline", "update", "--report", str(shorter_report), "--baseline-dir",
                 str(directory), "--counters-only"]) == 0
    out = capsys.readouterr().out
    assert "counters: unchanged" not in out and "decode steps 3 -> 13, tokens 3 -> 13" in out, out
    # counts of another batch shape: said as a recount, not as a refusal telling the user to
    # re-record with an unfilled "<report>" right after recording
    other_rows = _counted(_named(_run(), "a"), 9)
    other_rows["counters"]["rows"] = 2  # another batch shape
    assert main(["baseline", "update", "--report",
                 str(_report_named(tmp_path, "rows.json", [other_rows])),
                 "--baseline-dir", str(directory), "--counters-only"]) == 0
    out = capsys.readouterr().out
    assert "counters: recounted: the entry's old counts are not comparable with these (the " \
        "baseline counted other utterances" in out and "<report>" not in out, out

    # refused, one line each, file untouched: other transcripts, no counters, no entry,
    # --tolerance beside it
    kept = (directory / "cpu.json").read_bytes()
    other_text = _report_named(tmp_path, "other.json", [_counted(
        _named(_run(predictions={"a": "something else"}), "a"), 7)])
    uncounted = _report_named(tmp_path, "uncounted.json", [_named(_run(), "a")])
    unknown = _report_named(tmp_path, "unknown.json", [_counted(_named(_run(), "new"), 7)])
    for report, extra, message in (
            (other_text, [], "transcripts differ from the entry's"),
            (uncounted, [], "the report has no counters"),
            (unknown, [], "needs an existing entry"),
            (slow, ["--tolerance", "wer_abs=0.1"], "give no --tolerance")):
        assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                     str(directory), "--counters-only", *extra]) == 2
        assert message in capsys.readouterr().err
    assert (directory / "cpu.json").read_bytes() == kept


def test_a_baseline_file_linked_to_nowhere_is_unreadable_not_missing(tmp_path, capsys):
    """Baselines kept elsewhere and linked in, the other place not mounted: the dangling link
    was read as "no baseline yet", so `compare --allow-missing-baselines` passed with `result:
    ok` and `baseline update` offered to write a new file through it. Now both refuse, naming
    the link and its target."""
    from factories import door_report_document

    from asrbench.cli.main import main
    from asrbench.gate.baselines import load_for

    report = tmp_path / "r.json"
    report.write_text(json.dumps(door_report_document()), encoding="utf-8")
    linked = tmp_path / "baselines"
    linked.mkdir()
    (linked / "cpu.json").symlink_to(tmp_path / "not-mounted" / "cpu.json")
    with pytest.raises(AsrbenchError, match="cpu.json is a link to .*not-mounted/cpu.json, "
                                            "which does not exist"):
        load_for(linked, "cpu")
    assert main(["compare", "--report", str(report), "--baseline-dir", str(linked),
                 "--allow-missing-baselines"]) == 2
    captured = capsys.readouterr()
    assert "could not judge" in captured.out and "result: ok" not in captured.out
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(linked)]) == 2
    assert "which does not exist" in capsys.readouterr().err
    assert (linked / "cpu.json").is_symlink() and not (tmp_path / "not-mounted").exists()
    assert load_for(tmp_path / "nothing-here", "cpu") is None  # a missing file: no baseline yet


def test_a_refresh_refused_for_one_device_class_writes_no_file(tmp_path, capsys):
    """A report of two device classes whose second baseline file is broken: `baseline update`
    said so and exited 2, but had rewritten the first class's file already. Every file is read
    and every entry built before any is written now."""
    from factories import door_report_document

    from asrbench.cli.main import main

    document = door_report_document()
    document["runs"][1]["device"]["class"] = "zz"
    report = tmp_path / "r.json"
    report.write_text(json.dumps(document), encoding="utf-8")
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "zz.json").write_text("{", encoding="utf-8")
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(folder)]) == 2
    assert "invalid baseline file" in capsys.readouterr().err
    assert not (folder / "cpu.json").exists()  # the first class: not written either
    (folder / "zz.json").unlink()
    assert main(["baseline", "update", "--report", str(report), "--baseline-dir",
                 str(folder)]) == 0
    assert (folder / "cpu.json").exists() and (folder / "zz.json").exists()

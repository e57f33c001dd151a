"""The gate (asrbench/gate/outcome.py): a report against baseline files under one policy."""

from __future__ import annotations

import json

from factories import make_entry, make_report, make_run

from asrbench.formats.model import dump
from asrbench.gate.outcome import gate_report
from asrbench.gate.policy import Policy
from asrbench.render.text import outcome_text


def _write(directory, entries):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.json").write_text(json.dumps({
        "schema": 1, "device_class": "cpu",
        "entries": {name: dump(entry) for name, entry in entries.items()}}))


def _report(*runs):
    return make_report(*runs)


def _named(config_id, **kwargs):
    return make_run(config_id, **kwargs)


def _entry(run):
    return make_entry(run)


def _run():
    return make_run()


def test_entries_without_a_run_are_listed_not_failed(tmp_path):
    _write(tmp_path, {"a": _entry(_run()), "b": _entry(_run())})
    outcome = gate_report(_report(_named("a")), tmp_path)
    by_id = {c.config_id: c for c in outcome.comparisons}
    assert {v.verdict for v in by_id["b"].verdicts} == {"missing"}
    assert not outcome.failed and "result: ok" in outcome_text(outcome)


def test_a_run_without_an_entry_fails_unless_allowed_and_names_the_command(tmp_path):
    _write(tmp_path, {})
    outcome = gate_report(_report(_named("a")), tmp_path, report_path="r.json")
    assert outcome.failed and outcome.new_ids == ["a"]
    # the command carries the baseline folder the gate read (following it must write there)
    assert (f"asrbench baseline update --report r.json --baseline-dir {tmp_path} --only a"
            in outcome_text(outcome))
    assert not gate_report(_report(_named("a")), tmp_path, Policy(allow_missing=True)).failed


def test_each_baseline_file_is_read_once(tmp_path, monkeypatch):
    from asrbench.gate import baselines

    _write(tmp_path, {"a": _entry(_run()), "b": _entry(_run())})
    reads = []
    original = baselines.load_for
    monkeypatch.setattr(baselines, "load_for", lambda *a: reads.append(a) or original(*a))
    gate_report(_report(_named("a"), _named("b")), tmp_path)
    assert len(reads) == 1

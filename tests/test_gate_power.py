"""benchmarks/gate_power.py end to end at its smallest (one identical trial of two rounds, one
baseline process): the trial runs, every policy judges it, the table and the A/B outcome line
come out, and --rejudge works on what --keep left. The measured numbers are in
docs/performance.md; nothing here asserts a rate or a time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gate_power():
    spec = importlib.util.spec_from_file_location("gate_power",
                                                  ROOT / "benchmarks" / "gate_power.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gate_power_smallest_run_prints_the_table_and_rejudges(tmp_path, capsys):
    gate_power = _gate_power()
    keep = tmp_path / "keep"
    code = gate_power.main(["--trials", "1", "--slowdowns", "", "--baseline-processes", "1",
                            "--limit", "2", "--batch-size", "2", "--generation-max-length", "30",
                            "--ab-args", "--min-rounds 2 --max-rounds 2", "--keep", str(keep),
                            "--json", str(tmp_path / "trials.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert len(trials) == 1 and trials[0]["level"] == 0.0
    trial = trials[0]
    assert trial["ab_rounds"] == 2 and trial["ab_outcome"] in ("DIFFERENT", "SAME", "UNKNOWN")
    assert trial["A/B"] in (0, 1) and trial["samples_per_second"] > 0
    # the A/B ran at the benchmark's threshold (10%), recorded in its own document
    document = json.loads((keep / "ab1.json").read_text())
    assert document["settings"]["threshold"] == 0.1
    assert document["settings"]["looks"] == [2]
    assert (keep / "ab1" / "round1-head.json").exists()
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table] == [
        "policy", "stored, default band", "stored, per-class band", "stored, between-process",
        "A/B"]
    ab_row = table[-1].split("|")
    assert ab_row[2].strip() == f"{trial['A/B']}/1"  # false alarms: the A/B's exit code 1
    assert f"A/B at slowdown 0%: DIFFERENT {int(trial['ab_outcome'] == 'DIFFERENT')}" in out
    assert "rounds 2-2 (median 2)" in out

    assert gate_power.main(["--rejudge", str(keep), "--baseline-processes", "1"]) == 0
    rejudged = capsys.readouterr().out
    assert "stored baselines from the base side's first process of trials 1" in rejudged
    assert "| stored, between-process | 0/1 |" in rejudged or \
        "| stored, between-process | 1/1 |" in rejudged

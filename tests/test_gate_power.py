"""benchmarks/tools/gate_power.py end to end at its smallest (one identical trial of two rounds, one
baseline process): the trial runs, every policy judges it, the table and the A/B outcome line
come out, and --rejudge works on what --keep left. Whatever the trial's outcome, what the
script records must equal what `asrbench ab` wrote and what `asrbench compare` says of the same
reports. The measured numbers are in docs/performance.md; nothing here asserts a rate or a
time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from asrbench.cli.main import main as cli

ROOT = Path(__file__).resolve().parent.parent
GATE_POWER = ROOT / "benchmarks" / "tools" / "gate_power.py"
STORED = ("stored, default band", "stored, per-class band", "stored, between-process")


def _gate_power():
    spec = importlib.util.spec_from_file_location("gate_power", GATE_POWER)
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
    assert trials == json.loads((keep / "trials.json").read_text())["trials"]
    (trial,) = trials
    assert trial["level"] == 0.0 and trial["index"] == 1
    assert set(trial) == {"level", "trial", "index", *STORED, "samples_per_second", "A/B",
                          "ab_outcome", "ab_ratio", "ab_ci", "ab_rounds", "ab_seconds"}
    # the A/B fields are what `asrbench ab` itself wrote, run at the benchmark's threshold
    document = json.loads((keep / "ab1.json").read_text())
    (decision,) = document["decisions"]
    assert document["settings"]["threshold"] == 0.1
    assert document["settings"]["looks"] == [2]
    assert len(document["rounds"]) == trial["ab_rounds"] == decision["rounds"] == 2
    assert trial["ab_outcome"] == decision["outcome"]
    assert trial["ab_ratio"] == decision["ratio"]
    assert trial["ab_ci"] == [decision["ci_low"], decision["ci_high"]]
    assert trial["A/B"] == int(document["failed"])  # its exit status: 1 when the gate failed
    head = keep / "ab1" / "round1-head.json"
    head_run = json.loads(head.read_text())["runs"][0]
    assert trial["samples_per_second"] == head_run["metrics"]["samples_per_second"]
    # each stored-baseline policy is `asrbench compare` of the head's first process against
    # the baselines it recorded under --keep
    compared = {name: _compare(head, keep / _slug(name), capsys) for name in STORED}
    assert {name: trial[name] for name in STORED} == compared
    # the table holds the same counts: one trial at slowdown 0, so failures are false alarms
    table = {line.split("|")[1].strip(): line.split("|")[2].strip()
             for line in out.splitlines() if line.startswith("| ")}
    assert table == {"policy": "false alarms", **{name: f"{trial[name]}/1" for name in STORED},
                     "A/B": f"{trial['A/B']}/1"}
    counts = {o: int(trial["ab_outcome"] == o) for o in ("DIFFERENT", "SAME", "UNKNOWN")}
    assert ("A/B at slowdown 0%: " + ", ".join(f"{o} {n}" for o, n in counts.items())
            + "; rounds 2-2 (median 2)") in out

    # --rejudge records the baselines again from the base side's first process of trial 1 and
    # judges the head's first process: the same as `asrbench compare` against baselines
    # recorded from that report by `asrbench baseline update`
    base = keep / "ab1" / "round1-base.json"
    expected = {}
    for name, extra in ((STORED[0], []), (STORED[1], ["--tolerance",
                                                     "samples_per_second_rel=0.4"]),
                        (STORED[2], [])):
        directory = tmp_path / "expected" / _slug(name)
        assert cli(["baseline", "update", "--baseline-dir", str(directory), "--report",
                    str(base), *extra]) == 0
        expected[name] = _compare(head, directory, capsys)
    assert gate_power.main(["--rejudge", str(keep), "--baseline-processes", "1"]) == 0
    rejudged = capsys.readouterr().out
    assert "stored baselines from the base side's first process of trials 1:" in rejudged
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in rejudged.splitlines() if line.startswith("| ")}
    assert rows == {"policy": "false alarms",
                    **{name: f"{expected[name]}/1" for name in STORED}}
    # and judging the same files twice gives the same table
    assert gate_power.main(["--rejudge", str(keep), "--baseline-processes", "1"]) == 0
    assert capsys.readouterr().out == rejudged


def _slug(name: str) -> str:
    """The directory gate_power keeps a policy's baselines in (spaces to _, no commas)."""
    return name.replace(" ", "_").replace(",", "").replace("/", "")


def _compare(report: Path, baselines: Path, capsys) -> int:
    """1 when `asrbench compare` fails the report against these baselines, else 0."""
    code = cli(["compare", "--report", str(report), "--baseline-dir", str(baselines)])
    capsys.readouterr()
    assert code in (0, 1)
    return code

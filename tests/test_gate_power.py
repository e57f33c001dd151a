"""benchmarks/tools/gate_power.py end to end at its smallest (one identical trial and one
structural trial, two rounds each, one baseline process): the trials run, every policy judges
them, the table and the outcome lines come out, and --rejudge works on what --keep left.
Whatever the trials' outcomes, what the script records must equal what `asrbench ab` wrote,
what `asrbench compare` says of the same reports, and what the kept accuracy reports' work
counters say when read directly. The measured numbers are in docs/performance.md; nothing here
asserts a rate or a time. Every process runs the tiny random Whisper (conftest's tiny_whisper):
this tests the script's bookkeeping, which is the same whatever model the processes run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from asrbench.cli.main import main as cli

ROOT = Path(__file__).resolve().parent.parent
GATE_POWER = ROOT / "benchmarks" / "tools" / "gate_power.py"
STORED = ("stored, default band", "stored, per-class band", "stored, between-process")
#: the op-count fields of a report's counters (docs/counters.md)
OP_FIELDS = ("encoder_ops", "prompt_step_ops", "decode_step_ops", "other_ops")
#: fields that differ from process to process of the same code (not compared)
UNSTABLE = ("seconds", "peak_device_memory_bytes")


def _gate_power():
    spec = importlib.util.spec_from_file_location("gate_power", GATE_POWER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gate_power_smallest_run_prints_the_table_and_rejudges(tmp_path, capsys, tiny_whisper,
                                                               monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model's processes: one thread each
    gate_power = _gate_power()
    keep = tmp_path / "keep"
    code = gate_power.main(["--trials", "1", "--slowdowns", "", "--structural", "1",
                            "--baseline-processes", "1", "--model", str(tiny_whisper),
                            "--limit", "2", "--batch-size", "2", "--generation-max-length", "30",
                            "--ab-args", "--min-rounds 2 --max-rounds 2", "--keep", str(keep),
                            "--json", str(tmp_path / "trials.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = json.loads((tmp_path / "trials.json").read_text())["trials"]
    assert trials == json.loads((keep / "trials.json").read_text())["trials"]
    assert sorted(t["index"] for t in trials) == [1, 2]
    by_level = {t["level"]: t for t in trials}
    assert set(by_level) == {0.0, "matmul"}
    for trial in trials:
        assert set(trial) == {"level", "trial", "index", *STORED, "samples_per_second", "A/B",
                              "ab_outcome", "ab_ratio", "ab_ci", "ab_rounds", "ab_seconds",
                              "ab_throughput", "counters", "counters_seconds",
                              "counted_pass_seconds", "counters_changed"}
        index = trial["index"]
        # the A/B fields are what `asrbench ab` itself wrote, run at the benchmark's threshold
        document = json.loads((keep / f"ab{index}.json").read_text())
        (decision,) = document["decisions"]
        assert document["settings"]["threshold"] == 0.1
        assert document["settings"]["looks"] == [2]
        assert len(document["rounds"]) == trial["ab_rounds"] == decision["rounds"] == 2
        assert trial["ab_outcome"] == decision["outcome"]
        assert trial["ab_ratio"] == decision["ratio"]
        assert trial["ab_ci"] == [decision["ci_low"], decision["ci_high"]]
        assert trial["A/B"] == int(document["failed"])  # its exit status: 1 when the gate failed
        (throughput,) = [v for c in document["comparisons"] for v in c["verdicts"]
                         if v["metric"] == "samples_per_second"]
        assert trial["ab_throughput"] == int(throughput["verdict"] == "regressed")
        head = keep / f"ab{index}" / "round1-head.json"
        head_run = json.loads(head.read_text())["runs"][0]
        assert trial["samples_per_second"] == head_run["metrics"]["samples_per_second"]
        # each stored-baseline policy is `asrbench compare` of the head's first process against
        # the baselines it recorded under --keep
        compared = {name: _compare(head, keep / _slug(name), capsys) for name in STORED}
        assert {name: trial[name] for name in STORED} == compared
        # the counters policy, read directly from the kept accuracy reports: flagged when a
        # count of head's exceeds base's
        base_counters, head_counters = (
            json.loads((keep / f"ab{index}" / f"accuracy-{name}.json").read_text())["runs"][0]
            ["counters"] for name in ("base", "head"))
        assert trial["counters"] == _increased(base_counters, head_counters)
        assert trial["counted_pass_seconds"] == head_counters["seconds"]
        assert 0 < head_counters["seconds"] < trial["counters_seconds"] < trial["ab_seconds"]
        if trial["level"] == 0.0:
            # the same code on the same inputs counts the same work
            assert _stable(head_counters) == _stable(base_counters)
            assert trial["counters"] == 0 and trial["counters_changed"] == ""
        else:
            # one extra matmul per decoder layer in every decode step, named; the A/B fails it
            # through its exact counter check whatever its timing said
            mm = [k for k in head_counters["decode_step_ops"] if k.startswith("aten.mm ")]
            assert mm and all(head_counters["decode_step_ops"][k]
                              > base_counters["decode_step_ops"].get(k, 0) for k in mm)
            assert trial["counters"] == 1 and trial["A/B"] == 1
            assert "decode step: aten.mm" in trial["counters_changed"]
    # the table holds the same counts: false alarms from the identical trial, detections from
    # the structural one
    zero, matmul = by_level[0.0], by_level["matmul"]
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
             for line in out.splitlines() if line.startswith("| ")}
    assert table == {"policy": ["false alarms", "detects matmul"],
                     **{name: [f"{zero[name]}/1", f"{matmul[name]}/1"] for name in STORED},
                     "A/B": [f"{zero['A/B']}/1", f"{matmul['A/B']}/1"],
                     "A/B, throughput alone": [f"{zero['ab_throughput']}/1",
                                               f"{matmul['ab_throughput']}/1"],
                     "counters": [f"{zero['counters']}/1", "1/1"]}
    for level, name in ((0.0, "slowdown 0%"), ("matmul", "extra matmul")):
        counts = {o: int(by_level[level]["ab_outcome"] == o)
                  for o in ("DIFFERENT", "SAME", "UNKNOWN")}
        assert (f"A/B at {name}: " + ", ".join(f"{o} {n}" for o, n in counts.items())
                + "; rounds 2-2 (median 2)") in out
    assert "counters at slowdown 0%: 0/1 flagged\n" in out
    (changed,) = [line for line in out.splitlines()
                  if line.startswith("counters at extra matmul: ")]
    assert changed.startswith("counters at extra matmul: 1/1 flagged; changed: ")
    assert "decode step: aten.mm" in changed and matmul["counters_changed"] in changed
    assert "what only timing can catch" in out

    # --rejudge records the baselines again from the base side's first process of trial 1 and
    # judges the heads' first processes: the same as `asrbench compare` against baselines
    # recorded from that report by `asrbench baseline update`
    base = keep / "ab1" / "round1-base.json"
    expected: dict[str, dict] = {}
    for name, extra in ((STORED[0], []), (STORED[1], ["--tolerance",
                                                     "samples_per_second_rel=0.4"]),
                        (STORED[2], [])):
        directory = tmp_path / "expected" / _slug(name)
        assert cli(["baseline", "update", "--baseline-dir", str(directory), "--report",
                    str(base), *extra]) == 0
        expected[name] = {t["level"]: _compare(keep / f"ab{t['index']}" / "round1-head.json",
                                               directory, capsys) for t in trials}
    assert gate_power.main(["--rejudge", str(keep), "--baseline-processes", "1"]) == 0
    rejudged = capsys.readouterr().out
    assert "stored baselines from the base side's first process of trials 1:" in rejudged
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in rejudged.splitlines() if line.startswith("| ")}
    assert rows == {"policy": ["false alarms", "detects matmul"],
                    **{name: [f"{expected[name][0.0]}/1", f"{expected[name]['matmul']}/1"]
                       for name in STORED}}
    # and judging the same files twice gives the same table
    assert gate_power.main(["--rejudge", str(keep), "--baseline-processes", "1"]) == 0
    assert capsys.readouterr().out == rejudged


def _stable(counters: dict) -> dict:
    return {k: v for k, v in counters.items() if k not in UNSTABLE}


def _increased(base: dict, head: dict) -> int:
    """1 when head counted more of anything than base: an op (by name and dtype) per encoder
    call, prompt step, decode step or batch, or, over the same decode (steps and tokens), in
    all decode steps, FLOPs or host syncs per token."""
    def more(field: str) -> bool:
        return any(v > base[field].get(k, 0) for k, v in head[field].items())

    same_decode = (head["decode_steps"], head["tokens"]) == (base["decode_steps"], base["tokens"])
    return int(any(more(f) for f in OP_FIELDS) or same_decode and (
        more("decode_ops_total") or any(head[k] > base[k] for k in ("flops_per_utterance",
                                                                    "host_syncs_per_token"))))


def _slug(name: str) -> str:
    """The directory gate_power keeps a policy's baselines in (spaces to _, no commas)."""
    return name.replace(" ", "_").replace(",", "").replace("/", "")


def _compare(report: Path, baselines: Path, capsys) -> int:
    """1 when `asrbench compare` fails the report against these baselines, else 0."""
    code = cli(["compare", "--report", str(report), "--baseline-dir", str(baselines)])
    capsys.readouterr()
    assert code in (0, 1)
    return code

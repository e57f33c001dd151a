"""Exports (asrbench/history/export.py): pytest-benchmark's JSON, checked with pytest-benchmark's
own statistics, storage loader and `pytest-benchmark compare`; github-action-benchmark's custom
JSON, checked field by field against its BenchmarkResult format (name: string, value: number,
unit: string, optional range and extra: strings; a non-empty list)."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_report_document, run_cli, write_report

from asrbench.errors import AsrbenchError
from asrbench.formats.model import parse_report
from asrbench.history.export import export, github_action_benchmark_entries, round_stats

pytest_benchmark_stats = pytest.importorskip("pytest_benchmark.stats")


def _report(**kwargs):
    extra = make_report_document(config_id="second", sps=4.0, wer=0.4, cer=0.3, wer_normalized=None,
                        per_pass=[4.0, 4.2, 3.8, 4.1])["runs"]
    return parse_report(make_report_document(sps=10.0, per_pass=[9.0, 10.0, 11.0], extra_runs=extra,
                                    **kwargs))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 12])
def test_round_stats_equal_pytest_benchmarks_own(n):
    rng = random.Random(n)
    rounds = [rng.uniform(0.5, 2.0) for _ in range(n)] + ([9.0] if n > 4 else [])  # an outlier
    theirs = pytest_benchmark_stats.Stats()
    for value in rounds:
        theirs.update(value)
    ours = round_stats(rounds)
    for name in pytest_benchmark_stats.Stats.fields:
        expected = getattr(theirs, name)
        if isinstance(expected, float):
            assert ours[name] == pytest.approx(expected, rel=1e-12), name
        else:
            assert ours[name] == expected, name
    assert ours["data"] == rounds and ours["iterations"] == 1


def test_pytest_benchmark_document_rounds_are_timed_passes():
    document = export(_report(), "pytest-benchmark")
    assert set(document) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    first, second = document["benchmarks"]
    assert first["name"] == "cfg" and first["fullname"] == "asrbench::cpu::cfg"
    assert first["group"] == "asrbench cpu" and first["params"] == {"config": "cfg"}
    # 2 utterances per pass: seconds = 2 / samples/s of each pass
    assert first["stats"]["data"] == pytest.approx([2 / 9.0, 2 / 10.0, 2 / 11.0])
    assert first["stats"]["rounds"] == 3 and first["stats"]["median"] == pytest.approx(0.2)
    assert first["stats"]["ops"] == pytest.approx(3 / sum([2 / 9.0, 2 / 10.0, 2 / 11.0]))
    assert first["extra_info"]["samples_per_second"] == 10.0 and first["extra_info"]["wer"] == 0.2
    assert second["stats"]["rounds"] == 4 and second["extra_info"]["wer_normalized"] is None
    assert document["commit_info"]["id"] == "a" * 40 and document["commit_info"]["dirty"] is False
    assert document["datetime"] == "2026-01-01T00:00:00+00:00"
    assert export(_report(), "pytest-benchmark", commit="f" * 40,
                  branch="main")["commit_info"] == {**document["commit_info"], "id": "f" * 40,
                                                    "branch": "main"}


def test_pytest_benchmark_loads_and_compares_the_export(tmp_path):
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage

    path = tmp_path / "0001_asrbench.json"
    assert run_cli(["export", "--report", str(write_report(tmp_path / "r.json",
                                                           make_report_document(sps=10.0))),
                    "--format", "pytest-benchmark", "--out", str(path)]) == 0
    storage = FileStorage(tmp_path, logger=Logger(Logger.QUIET))
    (bench,) = list(storage.load_benchmarks(str(path)))
    assert bench["fullname"] == "asrbench::cpu::cfg" and bench["rounds"] == 3
    assert bench["median"] == pytest.approx(0.2)  # the stats are flattened into the bench
    # The command line, as a team would run it (in a directory without a conftest.py).
    cli = shutil.which("pytest-benchmark") or str(Path(sys.executable).parent / "pytest-benchmark")
    shown = subprocess.run([cli, "compare", str(path), "--columns", "min,median,max,rounds",
                            "--sort", "name"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("cfg"))
    assert "0.1980" in row or "198.0" in row  # min: 2 / 10.1 s, in s or ms
    assert row.split()[-1] == "3"  # rounds


def _check_custom_format(entries):
    assert isinstance(entries, list) and entries, "github-action-benchmark needs >= 1 entry"
    for entry in entries:
        assert set(entry) <= {"name", "value", "unit", "range", "extra"}
        assert isinstance(entry["name"], str) and entry["name"]
        assert isinstance(entry["unit"], str)
        assert isinstance(entry["value"], (int, float)) and not isinstance(entry["value"], bool)
        assert math.isfinite(entry["value"])
        for optional in ("range", "extra"):
            assert optional not in entry or isinstance(entry[optional], str)
    assert len({e["name"] for e in entries}) == len(entries)  # one series per name


def test_github_action_benchmark_bigger_is_samples_per_second(tmp_path):
    out = tmp_path / "bigger.json"
    report = write_report(tmp_path / "r.json", json.loads(json.dumps(
        make_report_document(sps=10.0, per_pass=[9.0, 10.0, 11.0],
                    extra_runs=make_report_document(config_id="second", sps=4.0)["runs"]))))
    assert run_cli(["export", "--report", str(report), "--format", "github-action-benchmark",
                    "--direction", "bigger", "--out", str(out)]) == 0
    entries = json.loads(out.read_text())
    _check_custom_format(entries)
    assert [(e["name"], e["unit"], e["value"]) for e in entries] == [
        ("cfg [cpu] samples/s", "samples/s", 10.0), ("second [cpu] samples/s", "samples/s", 4.0)]
    assert entries[0]["range"] == "± 1"  # sample stdev of 9, 10, 11


def test_github_action_benchmark_smaller_is_the_error_rates():
    entries = github_action_benchmark_entries(_report(), "smaller")
    _check_custom_format(entries)
    assert [(e["name"], e["value"]) for e in entries] == [
        ("cfg [cpu] WER", 0.2), ("cfg [cpu] normalized WER", 0.2), ("cfg [cpu] CER", 0.1),
        ("second [cpu] WER", 0.4), ("second [cpu] CER", 0.3)]  # undefined normalized WER: none


def test_export_errors_are_one_line(tmp_path):
    report = write_report(tmp_path / "r.json", make_report_document())
    with pytest.raises(AsrbenchError, match="needs --direction: bigger"):
        run_cli(["export", "--report", str(report), "--format", "github-action-benchmark",
                 "--out", str(tmp_path / "x.json")])
    with pytest.raises(AsrbenchError, match="--direction is for --format github-action"):
        run_cli(["export", "--report", str(report), "--format", "pytest-benchmark",
                 "--direction", "bigger", "--out", str(tmp_path / "x.json")])
    with pytest.raises(AsrbenchError, match="--commit and --branch are for --format pytest"):
        run_cli(["export", "--report", str(report), "--format", "github-action-benchmark",
                 "--direction", "bigger", "--commit", "abc", "--out", str(tmp_path / "x.json")])
    with pytest.raises(AsrbenchError, match="not found"):
        run_cli(["export", "--report", str(tmp_path / "none.json"), "--format",
                 "pytest-benchmark", "--out", str(tmp_path / "x.json")])
    interrupted = make_report_document()
    interrupted["interrupted"] = True
    with pytest.raises(AsrbenchError, match="interrupted run"):
        export(parse_report(interrupted), "pytest-benchmark")
    with pytest.raises(AsrbenchError, match="cannot be written"):
        run_cli(["export", "--report", str(report), "--format", "pytest-benchmark",
                 "--out", str(tmp_path)])
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):  # argparse: unknown format
        run_cli(["export", "--report", str(report), "--format", "csv", "--out", "x"])

"""One flow behind both doors (issue 30): `asrbench run`/`compare`/`baseline update` and the
pytest door do the same things the same way: the report path checked before anything runs and a
report that cannot be written saved elsewhere (saying where), baselines refreshed through the
one refusal of interrupted reports, each run judged from a report held to its own tolerance
policy. The pytest door judges reports here (`--asrbench-from-report`, pytester in-process,
runs built by factories): nothing loads a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_verdict_integrity import BENCH_FILE, CONFIGS, _report_document

from asrbench.cli.main import main


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path) -> dict[str, Path]:
    """A clean two-config report, its baselines (recorded by `asrbench baseline update`), and
    the benchmark tests with a conftest that loads the plugin, in pytester's directory."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps(_report_document()), encoding="utf-8")
    assert main(["baseline", "update", "--report", str(report),
                 "--baseline-dir", str(tmp_path / "recorded")]) == 0
    shutil.copy(BENCH_FILE, pytester.path / "test_bench.py")
    (pytester.path / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return {"report": report, "baselines": tmp_path / "recorded"}


def pytest_door(pytester: pytest.Pytester, report: Path, baselines: Path,
                *flags: str) -> tuple[pytest.RunResult, str]:
    """The pytest door judging `report` in this process: its result and terminal text."""
    result = pytester.runpytest_inprocess(
        "test_bench.py", "-p", "no:cacheprovider", "-q", "--rootdir", str(pytester.path),
        "--asrbench-from-report", str(report), "--asrbench-baseline-dir", str(baselines),
        *flags)
    return result, "\n".join(result.outlines + result.errlines)


def test_each_run_of_a_judged_report_keeps_its_own_tolerance_policy(project, pytester,
                                                                    tmp_path, capsys):
    """Two runs with their own matrix tolerance (wer_abs 0.5 and 0.001) and a baseline whose
    WER both are 0.05 above: the first passes, the second fails test_wer, in both doors, and
    the pytest door's report keeps each run's policy (the plugin used to overwrite one shared
    tolerance with each run it read, so the last run's held both)."""
    document = json.loads(project["report"].read_text())
    document["runs"][0]["tolerance_policy"] = {"wer_abs": 0.5}
    document["runs"][1]["tolerance_policy"] = {"wer_abs": 0.001}
    report = tmp_path / "tolerances.json"
    report.write_text(json.dumps(document))
    baseline = json.loads((project["baselines"] / "cpu.json").read_text())
    for config in CONFIGS:
        baseline["entries"][config.id]["metrics"]["wer"] -= 0.05
    folder = tmp_path / "moved"
    folder.mkdir()
    (folder / "cpu.json").write_text(json.dumps(baseline))

    capsys.readouterr()
    assert main(["compare", "--report", str(report), "--baseline-dir", str(folder)]) == 1
    text = capsys.readouterr().out
    assert f"REGRESSED  {CONFIGS[1].id} wer" in text and f"REGRESSED  {CONFIGS[0].id}" not in text

    out = pytester.path / "gate.json"
    result, text = pytest_door(pytester, report, folder, "--asrbench-report", str(out), "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert f"FAILED test_bench.py::test_wer[{CONFIGS[1].id}]" in text, text
    assert f"PASSED test_bench.py::test_wer[{CONFIGS[0].id}]" in text, text
    written = json.loads(out.read_text())
    assert [r["tolerance_policy"] for r in written["runs"]] == [{"wer_abs": 0.5},
                                                                {"wer_abs": 0.001}]

"""One verdict: the same report through pytest (--asrbench-from-report) and `asrbench compare`,
for every kind of change and every policy option, and the two doors must agree with each other
and with the expected outcome written out by hand below.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_verdict

from asrbench.cli.main import main
from asrbench.config.settings import BenchConfig
from asrbench.errors import AsrbenchError
from asrbench.gate.baselines import predictions_digest
from asrbench.gate.compare import Comparison
from asrbench.gate.policy import Policy
from asrbench.render.text import finding_text

BENCH_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "test_asr_regression.py"
# counters=False: the report is written by hand without counters, and a run whose settings
# claim counting but that has none is refused by both doors (issue 28)
CONFIG = BenchConfig(dataset_config="en", language="english", limit=3, counters=False)


def _report() -> dict:
    """A schema-1 report of one CPU run, as `asrbench run` writes it (numbers made up)."""
    predictions = {"u1": "the cat sat", "u2": "on the mat", "u3": "it rained"}
    return {"schema": 1, "environment": {"packages": {}}, "runs": [{
        "config": CONFIG.to_dict(),
        "device": {"kind": "cpu", "class": "cpu", "name": "test CPU", "environment": {}},
        "metrics": {"wer": 0.25, "wer_normalized": 0.2, "cer": 0.1, "samples_per_second": 2.0,
                    "rtfx": 8.0, "tokens_per_second": 20.0, "tokens_per_sample": 10.0},
        "throughput": {"samples_per_second_per_pass": [1.98, 2.0, 2.02],
                       "samples_per_second_min": 1.98, "samples_per_second_max": 2.02,
                       "samples_per_second_rsd": 0.01},
        "timings": {"compilations": None, "pass_seconds": [1.5, 1.5, 1.5]},
        "dataset": {"utterances": 3, "audio_seconds": 12.0, "skipped": []},
        "passes_identical": True, "reference": None,
        "utterances": [{"id": k, "reference": v, "prediction": v, "tokens": 3,
                        "audio_seconds": 4.0} for k, v in predictions.items()],
    }]}


def _regressed(entry):
    entry["metrics"]["samples_per_second"] *= 10
    entry["noise"]["samples_per_second_per_pass"] = [20.0, 20.1, 19.9]


def _improved(entry):
    entry["metrics"]["wer"] += 0.05  # the baseline was worse: the run improved on it


def _transcripts(entry):
    entry["predictions"]["u2"] = "on a mat"
    entry["predictions_sha256"] = predictions_digest(entry["predictions"])


SCENARIOS = {"unchanged": lambda entry: None, "regressed": _regressed, "improved": _improved,
             "transcripts": _transcripts, "missing": None}
POLICIES = {"default": [], "allow-improvements": ["--allow-improvements"],
            "transcripts-warn": ["--transcripts", "warn"],
            "allow-missing": ["--allow-missing-baselines"],
            "throughput-warn": ["--throughput", "warn"]}
# Expected: does the gate fail? Written by hand from the policy's rules (policy.py docstring).
FAILS = {
    "unchanged": {"default": False, "allow-improvements": False, "transcripts-warn": False,
                  "allow-missing": False, "throughput-warn": False},
    "regressed": {"default": True, "allow-improvements": True, "transcripts-warn": True,
                  "allow-missing": True, "throughput-warn": False},
    "improved": {"default": True, "allow-improvements": False, "transcripts-warn": True,
                 "allow-missing": True, "throughput-warn": True},
    "transcripts": {"default": True, "allow-improvements": True, "transcripts-warn": False,
                    "allow-missing": True, "throughput-warn": True},
    "missing": {"default": True, "allow-improvements": True, "transcripts-warn": True,
                "allow-missing": False, "throughput-warn": True},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project: the report, its baseline (recorded with `asrbench baseline update`),
    the benchmark tests and a conftest that loads the plugin."""
    root = tmp_path_factory.mktemp("doors")
    (root / "report.json").write_text(json.dumps(_report()))
    assert main(["baseline", "update", "--report", str(root / "report.json"),
                 "--baseline-dir", str(root / "recorded")]) == 0
    shutil.copy(BENCH_FILE, root / "test_bench.py")
    (root / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return root


def _baselines(project: Path, scenario: str) -> Path:
    directory = project / f"baselines-{scenario}"
    if not directory.exists():
        document = json.loads((project / "recorded" / "cpu.json").read_text())
        (entry,) = document["entries"].values()
        if SCENARIOS[scenario] is None:
            document["entries"] = {}
        else:
            SCENARIOS[scenario](entry)
        directory.mkdir()
        (directory / "cpu.json").write_text(json.dumps(document))
    return directory


def _pytest_door(project: Path, baselines: Path, flags: list[str]) -> int:
    pytest_flags = [f.replace("--", "--asrbench-", 1) if f.startswith("--") else f for f in flags]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_bench.py", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(project), "--asrbench-from-report", "report.json",
         "--asrbench-baseline-dir", str(baselines), "--asrbench-report",
         str(project / "pytest-report.json"), *pytest_flags],
        cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.returncode


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_pytest_and_compare_agree(project, scenario, policy):
    baselines = _baselines(project, scenario)
    flags = POLICIES[policy]
    compare_code = main(["compare", "--report", str(project / "report.json"),
                         "--baseline-dir", str(baselines), *flags])
    pytest_code = _pytest_door(project, baselines, flags)
    expected = FAILS[scenario][policy]
    assert (compare_code == 1, pytest_code == 1) == (expected, expected), \
        f"{scenario} / {policy}: compare exit {compare_code}, pytest exit {pytest_code}"


def test_policy_findings_by_check():
    """The policy on hand-made verdicts: which check fails or warns under which option."""
    improved = make_verdict("c", "wer", "improved", 0.2, 0.25, -0.05, 0.005)
    regressed = make_verdict("c", "samples_per_second", "regressed", 1.0, 2.0, -1.0, 0.1)
    faster = make_verdict("c", "samples_per_second", "improved", 3.0, 2.0, 1.0, 0.1)
    comparison = Comparison(config_id="c", verdicts=[improved, regressed, faster],
                            has_entry=True)
    findings = Policy().findings(comparison)
    assert [(f.check, f.fails) for f in findings] == [("wer", True), ("throughput", True)]
    relaxed = Policy(allow_improvements=True).findings(comparison, ["wer"])
    assert [(f.check, f.fails) for f in relaxed] == [("wer", False)]  # reported, not failing
    assert Policy().findings(Comparison(config_id="c", verdicts=[faster]),
                             ["throughput"]) == []  # faster is fine
    new = Comparison(config_id="c", verdicts=[], has_entry=False)
    assert Policy().fails([new]) and not Policy(allow_missing=True).fails([new])
    warned = Policy(throughput="warn").findings(comparison)
    assert [(f.check, f.fails) for f in warned] == [("wer", True), ("throughput", False)]
    assert "--throughput warn" in finding_text(warned[1])
    for option in ("transcripts", "throughput"):  # a user's error: one line, exit 2
        with pytest.raises(AsrbenchError) as refused:
            Policy(**{option: "ignore"})
        assert str(refused.value) == f"{option} must be one of fail, warn, got 'ignore'"


def test_missing_entries_of_other_configs_are_reported_not_failed(project):
    """A baseline entry without a run in the report is listed (missing), never a failure."""
    directory = project / "baselines-extra"
    if not directory.exists():
        document = json.loads((project / "recorded" / "cpu.json").read_text())
        (entry,) = document["entries"].values()
        document["entries"]["some-other-config"] = copy.deepcopy(entry)
        directory.mkdir()
        (directory / "cpu.json").write_text(json.dumps(document))
    assert main(["compare", "--report", str(project / "report.json"),
                 "--baseline-dir", str(directory)]) == 0

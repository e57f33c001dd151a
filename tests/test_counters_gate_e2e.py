"""Issue 22's "done when", from the command line: a baseline recorded from a clean `asrbench run`;
a run with an extra matmul per decoder layer (tests/inject_matmul.py, transcripts unchanged)
fails `asrbench compare` and the pytest gate's test_counters with the op named; a clean rerun
passes both. The workload is the smallest one (English, 2 clips, batch 2, length cap 30, 1 pass,
no reference) on the tiny random Whisper (conftest's tiny_whisper): what is tested is the
counting and the two doors' gate around the model. The embedded model's own counters are gated
in CI by the benchmarks (benchmarks/test_asr_regression.py::test_counters against
baselines/cpu.json). Throughput only warns (--throughput warn), so a loaded machine cannot fail
these comparisons on samples/s: the counts decide.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import ROOT, TINY_WHISPER, run_cli

from asrbench.cli.main import main

RUN = ["run", "--dataset-config", "en", "--language", "english", "--limit", "2",
       "--batch-size", "2", "--generation-max-length", "30", "--passes", "1",
       "--reference-utterances", "0", "--device", "cpu", "--no-progress"]
INJECT = ROOT / "tests" / "inject_matmul.py"
BENCH_FILE = ROOT / "benchmarks" / "test_asr_regression.py"
DECODER_LAYERS = TINY_WHISPER["decoder_layers"]  # one extra aten.mm per layer and step
OP = "aten.mm f32"
#: fields that move from run to run by design (docs/counters.md: never gated)
UNSTABLE = ("seconds", "peak_device_memory_bytes")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, tiny_whisper) -> Path:
    """A scratch project: a clean run's report (this process), the baseline recorded from it
    with `asrbench baseline update`, the benchmark tests and a conftest loading the plugin."""
    root = tmp_path_factory.mktemp("counters-e2e")
    assert run_cli([*RUN, "--model", str(tiny_whisper), "--report", str(root / "clean.json")]) == 0
    assert main(["baseline", "update", "--report", str(root / "clean.json"),
                 "--baseline-dir", str(root / "baselines")]) == 0
    shutil.copy(BENCH_FILE, root / "test_bench.py")
    (root / "conftest.py").write_text('pytest_plugins = ["asrbench.plugin"]\n')
    return root


def _child_run(root: Path, name: str, inject: bool, model: Path) -> dict:
    """An `asrbench run` of the same workload in a fresh process (with the extra matmul
    patched in, or clean): its one run record."""
    command = [str(INJECT)] if inject else ["-m", "asrbench"]
    report = root / f"{name}.json"
    proc = subprocess.run([sys.executable, *command, *RUN, "--model", str(model), "--report",
                           str(report)], cwd=root, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads(report.read_text())["runs"]
    return run


def _clean(root: Path) -> dict:
    (run,) = json.loads((root / "clean.json").read_text())["runs"]
    return run


def _predictions(run: dict) -> dict[str, str]:
    return {u["id"]: u["prediction"] for u in run["utterances"]}


def _counts(run: dict) -> dict:
    return {k: v for k, v in run["counters"].items() if k not in UNSTABLE}


def _compare(root: Path, report: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["compare", "--report", str(root / report), "--baseline-dir",
                 str(root / "baselines"), "--throughput", "warn"])
    return code, capsys.readouterr().out


def _pytest_gate(root: Path, report: str) -> subprocess.CompletedProcess:
    """The pytest door on a report (--asrbench-from-report): no model run."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_bench.py", "-p", "no:cacheprovider", "-q", "-rA",
         "--rootdir", str(root), "--asrbench-from-report", report,
         "--asrbench-baseline-dir", str(root / "baselines"), "--asrbench-throughput", "warn",
         "--asrbench-report", str(root / f"pytest-{report}")],
        cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def test_an_injected_extra_matmul_fails_compare_and_the_pytest_gate_naming_the_op(scratch,
                                                                                    capsys,
                                                                                    tiny_whisper):
    clean = _clean(scratch)
    injected = _child_run(scratch, "injected", inject=True, model=tiny_whisper)
    assert _predictions(injected) == _predictions(clean)  # the transcripts did not change
    was = clean["counters"]["decode_step_ops"][OP]
    named = f"decode step: {OP} {was} -> {was + DECODER_LAYERS} (+{DECODER_LAYERS})"

    code, out = _compare(scratch, "injected.json", capsys)
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert failed and all(" counters: counters." in line for line in failed), out
    assert any(named in line for line in failed), out

    proc = _pytest_gate(scratch, "injected.json")
    assert proc.returncode == 1
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    assert len(failures) == 1 and failures[0].startswith("FAILED test_bench.py::test_counters["), \
        proc.stdout[-3000:]
    assert named in proc.stdout, proc.stdout[-3000:]


def test_a_clean_rerun_passes_compare_and_the_pytest_gate_with_the_same_counts(scratch, capsys,
                                                                                tiny_whisper):
    clean = _clean(scratch)
    rerun = _child_run(scratch, "rerun", inject=False, model=tiny_whisper)
    assert _predictions(rerun) == _predictions(clean)
    assert _counts(rerun) == _counts(clean)  # another process, the same counts

    code, out = _compare(scratch, "rerun.json", capsys)
    assert code == 0, out
    assert "result: FAIL" not in out and not any(line.startswith("FAIL ")
                                                  for line in out.splitlines()), out

    proc = _pytest_gate(scratch, "rerun.json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # compared, not skipped: the baseline has counters
    assert "PASSED test_bench.py::test_counters[" in proc.stdout, proc.stdout[-3000:]

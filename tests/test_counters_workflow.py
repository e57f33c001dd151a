"""Issue 29: the pre-screen workflow's own commands, run here on the CPU. The emulated-Gaudi job
of .github/workflows/counters.yml is read from the YAML, and its `asrbench run` and `asrbench
compare` steps are run as written, only pointed at a scratch matrix (the tiny Whisper on 2 clips:
what is tested is the workflow around the model) and a scratch baseline folder. A pull request
that adds one matmul per decoder layer to the Gaudi code path (tests/inject_matmul.py, the
transcripts unchanged) must fail the compare step with the op named in the job summary.

Two emulated-Gaudi children (the emulation patches its process): a clean timed run that records
the baseline, and the workflow's counters-only run under the injection. Slow (tiny_whisper)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from factories import TINY_WHISPER

from asrbench.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "counters.yml"
INJECT = ROOT / "tests" / "inject_matmul.py"
yaml = pytest.importorskip("yaml", reason="pyyaml is in the dev extra")

SCRATCH_MATRIX = """
[hpu-emulated]
models = ["{model}"]
datasets = [{{ dataset = "embedded", dataset_config = "en", language = "english" }}]
precisions = ["fp32"]
batch_sizes = [2]
graphs = [true]
generation_max_length = 16
limit = 2
reference_utterances = 0
"""


def _job_commands(job: str) -> list[list[str]]:
    """The job's `.venv/bin/asrbench ...` commands, as argument lists, in step order."""
    document = yaml.safe_load(WORKFLOW.read_text())
    commands = []
    for step in document["jobs"][job]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line)
            if words and words[0] == ".venv/bin/asrbench":
                commands.append(words[1:])
    return commands


def _pointed(argv: list[str], **paths: str) -> list[str]:
    """argv with the values of some options replaced (the scratch matrix, report, ...)."""
    out = list(argv)
    for option, value in paths.items():
        flag = "--" + option.replace("_", "-")
        out[out.index(flag) + 1] = value
    return out


def _child(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_the_workflow_fails_a_pull_request_that_adds_an_op_to_the_gaudi_path(
        tmp_path, tiny_whisper, monkeypatch, capsys):
    run, compare = _job_commands("emulated-gaudi")
    assert run[0] == "run" and "--counters-only" in run and "--device" in run
    assert run[run.index("--device") + 1] == "hpu-emulated" and compare[0] == "compare"
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(SCRATCH_MATRIX.format(model=tiny_whisper))
    baselines = tmp_path / "baselines"
    # The baseline: a clean timed run of the same section, recorded as documented.
    clean = _child(["-m", "asrbench", "run", "--device", "hpu-emulated", "--matrix", str(matrix),
                    "--passes", "1", "--report", str(tmp_path / "clean.json"), "--no-progress"],
                   tmp_path)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert main(["baseline", "update", "--report", str(tmp_path / "clean.json"),
                 "--baseline-dir", str(baselines)]) == 0
    # The pull request: the workflow's own run step, one extra matmul per decoder layer.
    report = tmp_path / "reports" / "emulated.json"
    report.parent.mkdir()
    injected = _child([str(INJECT), *_pointed(run, matrix=str(matrix), report=str(report))],
                      tmp_path)
    assert injected.returncode == 0, injected.stderr[-2000:]
    # The workflow's compare step, its summary going to the job summary.
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main([*_pointed(compare, report=str(report)), "--baseline-dir", str(baselines)])
    out = capsys.readouterr().out
    assert code == 1, out
    layers = TINY_WHISPER["decoder_layers"]  # one extra aten.mm per layer and step
    assert f"decode step: aten.mm f32 2 -> {2 + layers} (+{layers})" in out, out
    assert "throughput: not measured (--counters-only)" in out
    job_summary = summary.read_text()
    assert "decode step: aten.mm f32" in job_summary and "❌" in job_summary
    assert (tmp_path / "counters.md").read_text() == job_summary

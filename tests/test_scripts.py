"""scripts/test.sh writes the benchmarks' session report under a temporary folder: it never
overwrites reports/latest.json, which scripts/bench.sh wrote; it leaves out the heavy tier
unless given --all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from factories import make_report_document, write_report

from conftest import HEAVY_TESTS

ROOT = Path(__file__).resolve().parents[1]
#: a config id of the [cpu] matrix section's default row, so --asrbench-from-report accepts it
CONFIG_ID = "whisper-base-commonvoice-mini-test-auto-transcribe-fp32-bs8"


def test_test_sh_leaves_reports_latest_json_alone(tmp_path):
    _layout(tmp_path)
    bench_report = write_report(tmp_path / "reports" / "latest.json", {"written by": "bench.sh"})
    write_report(tmp_path / "in.json", make_report_document(config_id=CONFIG_ID))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    done = subprocess.run(["bash", "scripts/test.sh", "benchmarks", "-p", "no:cacheprovider",
                           "--asrbench-from-report", "in.json", "--asrbench-baseline-dir",
                           str(tmp_path / "bl")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TMPDIR": str(temporary)})
    written = re.search(r"asrbench: report written to (\S+)", done.stdout)
    assert written, done.stdout[-3000:] + done.stderr[-3000:]
    assert Path(written.group(1)).parent.parent == temporary
    assert Path(written.group(1)).is_file()
    assert bench_report.read_text(encoding="utf-8") == '{"written by": "bench.sh"}'


def _layout(tmp_path: Path) -> Path:
    """A copy of the repository's layout where setup.sh is a no-op (no pip run in a test)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("exit 0\n", encoding="utf-8")
    for name in (".venv", "benchmarks", "baselines", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _collected(root: Path, *argv: str) -> set[str]:
    done = subprocess.run([*argv, "--collect-only", "-q", "-p", "no:cacheprovider",
                           *sorted({test.split("::")[0] for test in HEAVY_TESTS})],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def test_the_heavy_tier_is_what_test_sh_leaves_out_and_all_runs(tmp_path):
    """Every HEAVY_TESTS id names a collected test marked heavy (a renamed test or parameter
    would otherwise slip back into CI, or out of every tier, unnoticed); scripts/test.sh
    leaves exactly those out and `--all` takes them in."""
    root = _layout(tmp_path)
    python = str(ROOT / ".venv" / "bin" / "python")
    assert _collected(root, python, "-m", "pytest", "-m", "heavy") == set(HEAVY_TESTS)
    default = _collected(root, "bash", "scripts/test.sh")
    everything = _collected(root, "bash", "scripts/test.sh", "--all")
    assert default and not default & set(HEAVY_TESTS)
    assert everything == default | set(HEAVY_TESTS)

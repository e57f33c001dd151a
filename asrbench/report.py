"""The JSON report: environment, then one entry per run (results.Report, schema 1; its JSON
Schema is schemas/report.schema.json); written atomically, validated on load."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import stat
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from asrbench.engine import RunResult
from asrbench.errors import AsrbenchError
from asrbench.results import SCHEMA_VERSION, Report, Run, dump, parse_report

PACKAGES = ("asrbench", "torch", "transformers", "datasets", "jiwer", "soundfile", "soxr",
            "numpy", "optimum-habana", "habana-torch-plugin", "ctranslate2")


def git_commit() -> dict[str, Any]:
    """Commit of the working directory's repository (and whether it has local changes)."""
    cwd = Path.cwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a number came from: versions, machine, device, commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "device": device_info or {},
        "git": git_commit(),
        "argv": sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_entry(result: RunResult) -> Run:
    """One run as the report stores it."""
    return Run.model_validate({
        "config": result.config.to_dict(),
        "device": result.device,
        "metrics": result.metrics(),
        "throughput": {
            "samples_per_second_per_pass": list(result.throughput.per_pass),
            "samples_per_second_min": result.throughput.minimum,
            "samples_per_second_max": result.throughput.maximum,
            "samples_per_second_rsd": result.throughput.rsd,
        },
        "timings": result.timings.to_dict(),
        "dataset": {
            "name": result.dataset_name,
            "utterances": len(result.utterances),
            "audio_seconds": result.audio_seconds,
            "skipped": [{"id": s.id, "reason": s.reason} for s in result.skipped],
            "skipped_count": len(result.skipped),
            "normalized_wer_excluded": result.errors.normalized_excluded,
        },
        "passes_identical": result.passes_identical,
        "reference": result.reference,
        "utterances": [
            {"id": u.id, "reference": u.reference, "prediction": u.prediction,
             "tokens": u.tokens, "audio_seconds": u.audio_seconds}
            for u in result.utterances
        ],
    })


def build_report(runs: Iterable[Run | RunResult], env: dict[str, Any],
                 interrupted: bool = False) -> Report:
    """The whole report document (`interrupted`: a run stopped by a signal; the runs it
    finished are kept, and the gate refuses such a report)."""
    entries = [r if isinstance(r, Run) else run_entry(r) for r in runs]
    return Report.model_validate({"schema": SCHEMA_VERSION, "environment": env, "runs": entries,
                                  "interrupted": interrupted})


def check_writable(path: Path) -> None:
    """Refuse, before any work, a report path that is a directory or in a directory that cannot
    be created or written."""
    path = Path(path)
    if path.is_dir():
        raise AsrbenchError(f"--report {path} is a directory: name a file, e.g. {path / 'report.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".asrbench-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise AsrbenchError(f"--report {path}: its directory cannot be written "
                            f"({exc.strerror or exc})") from None


def write_report(path: Path, report: Report) -> None:
    """Write a report atomically (temp file + rename)."""
    write_json_atomic(path, dump(report))


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to a temp file in the target directory, then rename over the target."""
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file in the target directory (fsynced), then rename over the
    target: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a report or baseline is read by others (CI
        # artifact upload, reviewers): keep an existing file's mode, else the umask's default.
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed file is a user error naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AsrbenchError(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise AsrbenchError(f"invalid {what} {path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise AsrbenchError(f"invalid {what} {path}: not valid JSON ({exc})") from None
    except (OSError, RecursionError) as exc:  # a directory, no permission, nested too deep
        raise AsrbenchError(f"{what} {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def load_report(path: str | Path) -> Report:
    """Load a report and validate it (results.Report); errors name the file and the field."""
    path = Path(path)
    return parse_report(read_json(path, "report"), path)

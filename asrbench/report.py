"""The JSON report (schema 1): environment, then one entry per run; written atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from asrbench.engine import RunResult

SCHEMA = 1
PACKAGES = ("asrbench", "torch", "transformers", "datasets", "jiwer", "soundfile", "soxr",
            "numpy", "optimum-habana", "habana-torch-plugin", "ctranslate2")


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """Commit of the working directory's repository (and whether it has local changes)."""
    cwd = cwd or Path.cwd()
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


def run_entry(result: RunResult) -> dict[str, Any]:
    """One run as the report stores it."""
    return {
        "config": result.config.to_dict(),
        "device": result.device,
        "metrics": result.metrics(),
        "throughput": {
            "samples_per_second_per_pass": list(result.throughput.per_pass),
            "samples_per_second_min": result.throughput.minimum,
            "samples_per_second_max": result.throughput.maximum,
            "samples_per_second_rsd": result.throughput.rsd,
        },
        "timings": result.timings,
        "dataset": {
            "name": result.dataset_name,
            "utterances": len(result.utterances),
            "audio_seconds": result.audio_seconds,
            "skipped": [{"id": s.id, "reason": s.reason} for s in result.skipped],
            "skipped_count": len(result.skipped),
            "normalized_wer_excluded": result.errors.normalized_excluded,
        },
        "passes_identical": result.passes_identical,
        "utterances": [
            {"id": u.id, "reference": u.reference, "prediction": u.prediction,
             "tokens": u.tokens, "audio_seconds": u.audio_seconds}
            for u in result.utterances
        ],
    }


def build_report(results: Iterable[RunResult], env: dict[str, Any]) -> dict[str, Any]:
    """The whole report document."""
    return {"schema": SCHEMA, "environment": env, "runs": [run_entry(r) for r in results]}


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to a temp file in the target directory, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def summary_table(results: Iterable[RunResult]) -> str:
    """Plain-text table of the headline numbers, one row per run."""
    header = ("run", "utts", "skip", "WER", "WER norm", "CER", "samples/s", "RSD", "RTFx", "tok/s")
    rows = [header]
    for r in results:
        m = r.metrics()
        rows.append((r.config.id, str(len(r.utterances)), str(len(r.skipped)),
                     f"{m['wer']:.4f}", f"{m['wer_normalized']:.4f}", f"{m['cer']:.4f}",
                     f"{m['samples_per_second']:.3f}", f"{r.throughput.rsd * 100:.1f}%",
                     f"{m['rtfx']:.2f}", f"{m['tokens_per_second']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

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
from asrbench.errors import AsrbenchError

SCHEMA = 1
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
        "reference": result.reference,
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


def _report_error(path: Path, where: str, problem: str) -> AsrbenchError:
    return AsrbenchError(f"invalid report {path}: {where}: {problem}")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed file is a user error naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AsrbenchError(f"{what} {path} not found") from None
    except json.JSONDecodeError as exc:
        raise AsrbenchError(f"invalid {what} {path}: not valid JSON ({exc})") from None


def _check_ranks(path: Path, where: str, world_size: Any, timings: Any) -> None:
    """A data-parallel run carries one timing entry per rank."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise _report_error(path, f"{where}.config.world_size", "expected a positive integer")
    ranks = timings.get("ranks") if isinstance(timings, dict) else None
    if not isinstance(ranks, list) or len(ranks) != world_size or not all(
            isinstance(r, dict) and isinstance(r.get("pass_seconds"), list)
            and isinstance(r.get("utterances"), int) for r in ranks):
        raise _report_error(path, f"{where}.timings.ranks",
                            f"expected {world_size} entries of {{rank, utterances, pass_seconds, ...}}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_compilations(path: Path, where: str, compilations: Any) -> None:
    """timings.compilations: null, or {counter, warmup: count, passes: [count, ...]}."""
    if compilations is None:
        return
    field = f"{where}.timings.compilations"
    if not isinstance(compilations, dict) or not _is_count(compilations.get("warmup")):
        raise _report_error(path, field, "expected {counter, warmup, passes} with counts")
    passes = compilations.get("passes")
    if not isinstance(passes, list) or not passes or not all(_is_count(p) for p in passes):
        raise _report_error(path, f"{field}.passes", "expected a non-empty list of counts")


def _check_reference(path: Path, where: str, reference: Any) -> None:
    """reference: null, {error: text, ...}, or {utterances, identical, share, wer, ...}."""
    if reference is None:
        return
    field = f"{where}.reference"
    if not isinstance(reference, dict):
        raise _report_error(path, field, "expected an object or null")
    if "error" in reference:
        if not isinstance(reference["error"], str):
            raise _report_error(path, f"{field}.error", "expected a string")
        return
    for name in ("utterances", "identical"):
        if not _is_count(reference.get(name)):
            raise _report_error(path, f"{field}.{name}", "expected a count")
    for name in ("share", "wer"):
        value = reference.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _report_error(path, f"{field}.{name}", "expected a number >= 0")
    if reference["identical"] > reference["utterances"] or reference["share"] > 1:
        raise _report_error(path, field, "more identical transcripts than utterances")


def load_report(path: str | Path) -> dict[str, Any]:
    """Load a report and validate what comparison and baseline refresh rely on."""
    path = Path(path)
    document = read_json(path, "report")
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise _report_error(path, "schema", f"expected {SCHEMA}")
    if not isinstance(document.get("environment"), dict):
        raise _report_error(path, "environment", "expected an object")
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise _report_error(path, "runs", "expected a list")
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            raise _report_error(path, where, "expected an object")
        if not isinstance(run.get("config"), dict) or not isinstance(run["config"].get("id"), str):
            raise _report_error(path, f"{where}.config.id", "expected a string")
        if not isinstance(run.get("device"), dict) or not isinstance(run["device"].get("class"), str):
            raise _report_error(path, f"{where}.device.class", "expected a string")
        metrics = run.get("metrics")
        if not isinstance(metrics, dict):
            raise _report_error(path, f"{where}.metrics", "expected an object")
        for name in ("wer", "wer_normalized", "cer", "samples_per_second"):
            value = metrics.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _report_error(path, f"{where}.metrics.{name}", "expected a number")
        per_pass = run.get("throughput", {}).get("samples_per_second_per_pass")
        if not isinstance(per_pass, list) or not per_pass or not all(
                isinstance(v, (int, float)) and v > 0 for v in per_pass):
            raise _report_error(path, f"{where}.throughput.samples_per_second_per_pass",
                                "expected a non-empty list of positive numbers")
        if not isinstance(run.get("throughput", {}).get("samples_per_second_rsd"), (int, float)):
            raise _report_error(path, f"{where}.throughput.samples_per_second_rsd", "expected a number")
        world_size = run["config"].get("world_size", 1)
        if world_size != 1:
            _check_ranks(path, where, world_size, run.get("timings"))
        _check_compilations(path, where, (run.get("timings") or {}).get("compilations"))
        _check_reference(path, where, run.get("reference"))
        policy = run.get("tolerance_policy")
        if policy is not None:
            from asrbench.baselines import check_tolerance

            if not isinstance(policy, dict):
                raise _report_error(path, f"{where}.tolerance_policy", "expected an object")
            try:
                check_tolerance(policy, f"{where}.tolerance_policy")
            except AsrbenchError as exc:
                raise _report_error(path, f"{where}.tolerance_policy", str(exc)) from None
        utterances = run.get("utterances")
        if not isinstance(utterances, list) or not all(
                isinstance(u, dict) and isinstance(u.get("id"), str) and isinstance(u.get("prediction"), str)
                for u in utterances):
            raise _report_error(path, f"{where}.utterances", "expected a list of {id, prediction, ...}")
    return document

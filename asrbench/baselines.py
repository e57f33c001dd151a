"""Stored baselines: one JSON file per device class, validated on load, updated atomically.

File schema 1:
    {"schema": 1, "device_class": "cpu", "entries": {"<config id>": {
        "metrics": {"wer", "wer_normalized", "cer", "samples_per_second"},
        "tolerance": {"wer_abs", "cer_abs", "samples_per_second_rel", "noise_factor"},
        "noise": {"samples_per_second_rsd", "passes", "samples_per_second_per_pass"},
        "predictions_sha256": "...", "predictions": {"<utterance id>": "<text>"},
        "environment": {...}, "commit": "...", "updated": "<ISO date>"}}}
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.report import read_json, write_json_atomic

SCHEMA = 1
DEFAULT_TOLERANCE = {
    "wer_abs": 0.005,  # absolute WER points
    "cer_abs": 0.005,  # absolute CER points
    "samples_per_second_rel": 0.05,  # relative drop always allowed
    "noise_factor": 3.0,  # ...or this many times the measured relative noise, if larger
    # Agreement with the stock fp32 CPU reference (runs that are not that setup): at least this
    # share of the first N transcripts identical, and at most this WER against the reference's.
    # Measured (docs/hpu.md): graphs over a DynamicCache 1/6 identical, WER 0.6; optimum-habana's
    # static path 0/6, WER ~1; CPU bf16 against the fp32 reference: English 15/16 and WER 0.012,
    # the synthetic Hindi (long loops that bf16 bends) 7/16 and WER 0.159.
    "reference_share_min": 0.25,
    "reference_wer_max": 0.3,
}
GATED_METRICS = ("wer", "wer_normalized", "cer", "samples_per_second")
ENVIRONMENT_KEYS = ("torch", "transformers", "optimum-habana", "datasets", "habana-torch-plugin")


def predictions_digest(predictions: dict[str, str]) -> str:
    """sha256 over (id, prediction) pairs in id order: equal digests mean equal transcripts."""
    canonical = json.dumps(sorted(predictions.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def baseline_path(directory: str | Path, device_class: str) -> Path:
    """baselines/<device class>.json"""
    return Path(directory) / f"{device_class}.json"


def _fail(path: Path, where: str, problem: str) -> AsrbenchError:
    return AsrbenchError(f"invalid baseline file {path}: {where}: {problem}")


def _number(path: Path, where: str, value: Any, allow_nan: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, where, f"expected a number, got {type(value).__name__}")
    if not allow_nan and not math.isfinite(value):
        raise _fail(path, where, "must be a finite number")
    return float(value)


def validate(document: Any, path: Path) -> dict[str, Any]:
    """Check a loaded baseline document field by field; raise naming the file and field."""
    if not isinstance(document, dict):
        raise _fail(path, "top level", "expected a JSON object")
    if document.get("schema") != SCHEMA:
        raise _fail(path, "schema", f"expected {SCHEMA}, got {document.get('schema')!r}")
    if not isinstance(document.get("device_class"), str) or not document["device_class"]:
        raise _fail(path, "device_class", "expected a non-empty string")
    entries = document.get("entries")
    if not isinstance(entries, dict):
        raise _fail(path, "entries", "expected an object of config id -> entry")
    for config_id, entry in entries.items():
        where = f"entries[{config_id!r}]"
        if not isinstance(entry, dict):
            raise _fail(path, where, "expected an object")
        metrics = entry.get("metrics")
        if not isinstance(metrics, dict):
            raise _fail(path, f"{where}.metrics", "expected an object")
        for name in GATED_METRICS:
            if name not in metrics:
                raise _fail(path, f"{where}.metrics.{name}", "missing")
            _number(path, f"{where}.metrics.{name}", metrics[name], allow_nan=name == "wer_normalized")
        tolerance = entry.get("tolerance", {})
        if not isinstance(tolerance, dict):
            raise _fail(path, f"{where}.tolerance", "expected an object")
        for name, value in tolerance.items():
            if name not in DEFAULT_TOLERANCE:
                raise _fail(path, f"{where}.tolerance.{name}",
                            f"unknown tolerance (known: {', '.join(DEFAULT_TOLERANCE)})")
            if _number(path, f"{where}.tolerance.{name}", value) < 0:
                raise _fail(path, f"{where}.tolerance.{name}", "must be >= 0")
        noise = entry.get("noise", {})
        if not isinstance(noise, dict):
            raise _fail(path, f"{where}.noise", "expected an object")
        per_pass = noise.get("samples_per_second_per_pass", [])
        if not isinstance(per_pass, list):
            raise _fail(path, f"{where}.noise.samples_per_second_per_pass", "expected a list")
        for i, value in enumerate(per_pass):
            _number(path, f"{where}.noise.samples_per_second_per_pass[{i}]", value)
        predictions = entry.get("predictions", {})
        if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
            raise _fail(path, f"{where}.predictions", "expected an object of id -> text")
        digest = entry.get("predictions_sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise _fail(path, f"{where}.predictions_sha256", "expected a sha256 hex digest")
        if predictions and predictions_digest(predictions) != digest:
            raise _fail(path, f"{where}.predictions_sha256", "does not match the stored predictions")
    return document


def load(path: str | Path) -> dict[str, Any]:
    """Load and validate one baseline file."""
    path = Path(path)
    return validate(read_json(path, "baseline file"), path)


def load_for(directory: str | Path, device_class: str) -> dict[str, Any] | None:
    """The baseline document for a device class, or None when the file does not exist yet."""
    path = baseline_path(directory, device_class)
    if not path.exists():
        return None
    document = load(path)
    if document["device_class"] != device_class:
        raise _fail(path, "device_class", f"file is named for {device_class!r} but says "
                                          f"{document['device_class']!r}")
    return document


def tolerance_of(entry: dict[str, Any]) -> dict[str, float]:
    """Default tolerances overridden by the entry's own."""
    return {**DEFAULT_TOLERANCE, **entry.get("tolerance", {})}


def check_tolerance(tolerance: dict[str, Any], where: str) -> dict[str, float]:
    """Validate tolerance overrides (known names, non-negative numbers)."""
    for name, value in tolerance.items():
        if name not in DEFAULT_TOLERANCE:
            raise AsrbenchError(f"{where}: unknown tolerance {name!r} (known: {', '.join(DEFAULT_TOLERANCE)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AsrbenchError(f"{where}: tolerance {name} must be a number >= 0, got {value!r}")
    return {k: float(v) for k, v in tolerance.items()}


def entry_from_run(run: dict[str, Any], environment: dict[str, Any],
                   previous: dict[str, Any] | None = None,
                   tolerance: dict[str, float] | None = None) -> dict[str, Any]:
    """A baseline entry from one report run; the previous entry's tolerance overrides are kept,
    and `tolerance` (e.g. the matrix's per-device-class policy) is applied on top."""
    metrics = run["metrics"]
    predictions = {u["id"]: u["prediction"] for u in run["utterances"]}
    packages = environment.get("packages", {})
    device = environment.get("device", {})
    entry = {
        "metrics": {name: metrics[name] for name in GATED_METRICS},
        "tolerance": {**(previous or {}).get("tolerance", {}), **(tolerance or {})},
        "noise": {
            "samples_per_second_rsd": run["throughput"]["samples_per_second_rsd"],
            "passes": len(run["throughput"]["samples_per_second_per_pass"]),
            "samples_per_second_per_pass": list(run["throughput"]["samples_per_second_per_pass"]),
        },
        "predictions_sha256": predictions_digest(predictions),
        "predictions": predictions,
        "environment": {**{k: packages.get(k) for k in ENVIRONMENT_KEYS},
                        "device": device.get("name"), **device.get("environment", {})},
        "commit": environment.get("git", {}).get("commit"),
        "updated": dt.datetime.now(dt.timezone.utc).date().isoformat(),
    }
    return entry


def update(directory: str | Path, device_class: str, runs: list[dict[str, Any]],
           environment: dict[str, Any], tolerance: dict[str, float] | None = None
           ) -> list[tuple[str, dict | None, dict]]:
    """Rewrite only the given runs' entries in <directory>/<device_class>.json, atomically.

    Holds a lock file while reading and writing, so two refreshes never interleave. Returns
    (config id, old entry or None, new entry) for every entry written.
    """
    from filelock import FileLock

    path = baseline_path(directory, device_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=120):
        document = load_for(directory, device_class) if path.exists() else None
        if document is None:
            document = {"schema": SCHEMA, "device_class": device_class, "entries": {}}
        document = copy.deepcopy(document)
        changes = []
        for run in runs:
            config_id = run["config"]["id"]
            old = document["entries"].get(config_id)
            new = entry_from_run(run, environment, old, tolerance)
            document["entries"][config_id] = new
            changes.append((config_id, old, new))
        document["entries"] = dict(sorted(document["entries"].items()))
        write_json_atomic(path, document)
    return changes


def change_table(changes: list[tuple[str, dict | None, dict]]) -> str:
    """old -> new for every metric of every updated entry, for review in the PR."""
    lines = []
    for config_id, old, new in changes:
        lines.append(f"{config_id}{'  (new entry)' if old is None else ''}")
        for name in GATED_METRICS:
            before = "-" if old is None else f"{old['metrics'][name]:.4f}"
            lines.append(f"  {name:<20} {before:>10} -> {new['metrics'][name]:.4f}")
        if old is not None and old["predictions_sha256"] != new["predictions_sha256"]:
            changed = sum(1 for k, v in new["predictions"].items() if old["predictions"].get(k) != v)
            lines.append(f"  transcripts: {changed} changed")
    return "\n".join(lines)

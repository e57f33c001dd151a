"""Factories for valid typed records (asrbench.formats.model) in tests: a run, a report, a
baseline entry, a verdict. Numbers are made up; every argument overrides one field."""

from __future__ import annotations

import statistics
from typing import Any

from asrbench.formats.model import (
    SCHEMA_VERSION,
    BaselineEntry,
    Report,
    Run,
    Verdict,
    predictions_digest,
)


def rsd(rates: tuple[float, ...] | list[float]) -> float:
    """Relative standard deviation (stdev / mean) of per-pass rates; 0 for a single pass."""
    return statistics.stdev(rates) / statistics.fmean(rates) if len(rates) > 1 else 0.0


def make_run(config_id: str = "cfg", wer: float = 0.2, cer: float = 0.1,
             rates: tuple[float, ...] = (10.0, 10.0, 10.0),
             predictions: dict[str, str] | None = None, device_class: str = "cpu",
             compilations: dict[str, Any] | None = None, reference: dict[str, Any] | None = None,
             wer_normalized: float | None = None, contention: dict[str, Any] | None = None,
             **fields: Any) -> Run:
    """A scored report run: `rates` are the passes' samples/s (the median is the headline),
    `predictions` utterance id -> transcript (the reference text is the prediction),
    `contention` the timings' measured CPU share (make_contention)."""
    predictions = predictions if predictions is not None else {"a": "hello world"}
    document: dict[str, Any] = {
        "config": {"id": config_id},
        "device": {"kind": device_class.split("-")[0], "class": device_class},
        "metrics": {"wer": wer, "wer_normalized": wer if wer_normalized is None else wer_normalized,
                    "cer": cer, "samples_per_second": statistics.median(rates)},
        "throughput": {"samples_per_second_per_pass": list(rates),
                       "samples_per_second_min": min(rates),
                       "samples_per_second_max": max(rates),
                       "samples_per_second_rsd": rsd(rates)},
        "timings": {"compilations": compilations, "contention": contention},
        "reference": reference,
        "utterances": [{"id": k, "reference": v, "prediction": v}
                       for k, v in predictions.items()],
    }
    document.update(fields)
    return Run.model_validate(document)


def make_entry(run: Run, **tolerance: float) -> BaselineEntry:
    """The baseline entry a run would record: its gated metrics, noise and transcripts."""
    predictions = {u.id: u.prediction for u in run.utterances}
    return BaselineEntry.model_validate({
        "metrics": {k: getattr(run.metrics, k)
                    for k in ("wer", "wer_normalized", "cer", "samples_per_second")},
        "tolerance": tolerance,
        "noise": {"samples_per_second_rsd": run.throughput.samples_per_second_rsd,
                  "passes": len(run.throughput.samples_per_second_per_pass),
                  "samples_per_second_per_pass": list(run.throughput.samples_per_second_per_pass)},
        "predictions": predictions, "predictions_sha256": predictions_digest(predictions)})


def make_contention(cpu_seconds: float, wall_seconds: float = 10.0, threads: int = 2,
                    threads_of: str = "torch", **fields: Any) -> dict[str, Any]:
    """A run's measured contention (timings.contention): `cpu_seconds` of CPU time in
    `wall_seconds` of timed passes on `threads` threads (share = cpu / (wall x threads))."""
    return {"cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds, "threads": threads,
            "threads_of": threads_of, **fields}


def make_report(*runs: Run, interrupted: bool = False) -> Report:
    """A schema-1 report of these runs (one default run if none)."""
    return Report.model_validate({"schema": SCHEMA_VERSION, "environment": {"packages": {}},
                                  "runs": list(runs) or [make_run()],
                                  "interrupted": interrupted})


def make_verdict(config_id: str, metric: str, verdict: str, value: float | None,
                 baseline: float | None, delta: float | None = None,
                 allowed: float | None = None, note: str = "") -> Verdict:
    """A verdict from its fields in order."""
    return Verdict(config_id=config_id, metric=metric, verdict=verdict, value=value,
                   baseline=baseline, delta=delta, allowed=allowed, note=note)

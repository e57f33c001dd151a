"""A RunResult of the engine as the report's typed Run, and a report of runs."""

from __future__ import annotations

from typing import Any, Iterable

from asrbench.formats.model import SCHEMA_VERSION, Report, Run
from asrbench.measure.engine import RunResult

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

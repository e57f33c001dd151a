"""Stored baselines: one JSON file per device class, validated on load, updated atomically.

The file format is formats.model.BaselineFile (schema 1; its JSON Schema is
schemas/baseline.schema.json):
    {"schema": 1, "device_class": "cpu", "entries": {"<config id>": {
        "metrics": {"wer", "wer_normalized", "cer", "samples_per_second"},
        "tolerance": {"wer_abs", "cer_abs", "samples_per_second_rel", "noise_factor",
                      "reference_share_min", "reference_wer_max"},
        "noise": {"samples_per_second_rsd", "passes", "samples_per_second_per_pass",
                  "samples_per_second_per_process"},
        "predictions_sha256": "...", "predictions": {"<utterance id>": "<text>"},
        "normalizer": "asrbench-basic-marks/1", "edits": {"<utterance id>": [6 counts]},
        "environment": {...}, "commit": "...", "updated": "<ISO date>"}}}
"""

from __future__ import annotations

import datetime as dt
import math
import re
import statistics
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import ValidationError

from asrbench.errors import AsrbenchError
from asrbench.formats.io import read_json, write_json_atomic
from asrbench.formats.model import (
    NAME_PATTERN,
    SCHEMA_VERSION,
    BaselineEntry,
    BaselineFile,
    Environment,
    Run,
    Tolerance,
    dump,
    parse_baselines,
    predictions_digest,
    validation_error,
)
from asrbench.gate.accuracy import check_edits
from asrbench.gate.counters import (
    check_countable,
    check_same_counters,
)

DEFAULT_TOLERANCE = Tolerance(
    wer_abs=0.005,  # absolute WER points
    cer_abs=0.005,  # absolute CER points
    samples_per_second_rel=0.05,  # relative drop always allowed
    noise_factor=3.0,  # ...or this many times the measured relative noise, if larger
    # Agreement with the stock fp32 CPU reference (runs that are not that setup): at least this
    # share of the first N transcripts identical, and at most this WER against the reference's.
    # Measured (docs/hpu.md): graphs over a DynamicCache 1/6 identical, WER 0.6; optimum-habana's
    # static path 0/6, WER ~1; CPU bf16 against the fp32 reference: English 15/16 and WER 0.012,
    # the synthetic Hindi (long loops that bf16 bends) 7/16 and WER 0.159.
    reference_share_min=0.25,
    reference_wer_max=0.3,
    # A run computing on the CPU that got less than this share of its threads' CPU time during
    # its timed passes (CPU time / (wall time x threads), timings.contention) was starved: its
    # throughput is not judged (docs/gate.md, "How throughput bands and contention are
    # decided"); 0 judges every run.
    cpu_share_min=0.5,
)
#: The narrowest throughput band of an entry recorded from one process (docs/gate.md, "How
#: throughput bands and contention are decided"). One process has no between-process spread:
#: its passes share the process's fixed part of the noise, so the recorded RSD says nothing
#: about the next process. A drop below 40% of the baseline (2.5x slower) is beyond the spread
#: measured between processes of the same code (docs/performance.md, "Noise between
#: processes"); anything narrower needs an entry from several processes or `asrbench ab`.
ONE_PROCESS_REL = 0.6
#: processes a baseline entry should be recorded from for a band of its own
#: (`asrbench baseline update --report r1 r2 r3`)
RECOMMENDED_PROCESSES = 3
GATED_METRICS = ("wer", "wer_normalized", "cer", "samples_per_second")
ENVIRONMENT_KEYS = ("torch", "transformers", "optimum-habana", "datasets", "habana-torch-plugin")


def baseline_path(directory: str | Path, device_class: str) -> Path:
    """baselines/<device class>.json; a device class is a plain name, never a path."""
    if not re.fullmatch(NAME_PATTERN, device_class):
        raise AsrbenchError(f"device class {device_class!r} is not a plain name (letters, digits, "
                            "., _, +, -): it names a file in the baseline directory")
    return Path(directory) / f"{device_class}.json"


def validate(document: Any, path: Path) -> BaselineFile:
    """A loaded baseline document, validated; errors name the file and the field."""
    return parse_baselines(document, path)


def load(path: str | Path) -> BaselineFile:
    """Load and validate one baseline file."""
    path = Path(path)
    return validate(read_json(path, "baseline file"), path)


def load_for(directory: str | Path, device_class: str) -> BaselineFile | None:
    """The baseline file of a device class, or None when it does not exist yet (a link that
    points nowhere is a file that cannot be read, not a missing one: baselines kept elsewhere
    and linked in, with the other place not mounted, must not read as "no baseline yet")."""
    path = baseline_path(directory, device_class)
    if not path.exists() and not path.is_symlink():
        return None
    document = load(path)
    if document.device_class != device_class:
        raise AsrbenchError(f"invalid baseline file {path}: device_class: file is named for "
                            f"{device_class!r} but says {document.device_class!r}")
    return document


def tolerance_of(entry: BaselineEntry | None, policy: Tolerance | None = None) -> Tolerance:
    """Default tolerances overridden by a policy (a matrix section's), then by the entry's own:
    every tolerance set."""
    return DEFAULT_TOLERANCE.over(policy, entry.tolerance if entry is not None else None)


def check_tolerance(tolerance: Any, where: str) -> Tolerance:
    """Validate tolerance overrides (known names, numbers >= 0); one-line error naming them."""
    if not isinstance(tolerance, dict):
        raise AsrbenchError(f"{where}: expected a table of tolerances")
    known = list(Tolerance.model_fields)
    for name, value in tolerance.items():
        if name not in known:
            raise AsrbenchError(f"{where}: unknown tolerance {name!r} "
                                f"(known: {', '.join(known)})")
        # nan < 0 is False: a NaN band would never fail, an infinite one lets anything pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise AsrbenchError(f"{where}: tolerance {name} must be a finite number >= 0, "
                                f"got {value!r}")
        # a share is at most 1: cpu_share_min 5 made every run "not judged: machine busy",
        # reference_share_min 2 an agreement no run can reach
        if name.endswith("_share_min") and value > 1:
            raise AsrbenchError(f"{where}: tolerance {name} is a share: at most 1, "
                                f"got {value!r}")
    try:
        return Tolerance.model_validate(tolerance)
    except ValidationError as exc:
        raise validation_error(exc, "tolerance", where) from None


def entry_from_run(run: Run, environment: dict[str, Any] | Environment,
                   previous: BaselineEntry | None = None,
                   tolerance: Tolerance | None = None) -> BaselineEntry:
    """A baseline entry from one report run; the previous entry's tolerance overrides are kept,
    and `tolerance` (e.g. the matrix's per-device-class policy) is applied on top."""
    return entry_from_runs([run], environment, previous, tolerance)


def check_same_transcripts(runs: list[Run]) -> None:
    """Runs of one config from several processes must agree on every transcript: otherwise
    they did not run the same code and settings, and their spread is not noise."""
    first = {u.id: u.prediction for u in runs[0].utterances}
    for number, run in enumerate(runs[1:], start=2):
        other = {u.id: u.prediction for u in run.utterances}
        if other != first:
            differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise AsrbenchError(
                f"{run.config.id}: report {number} disagrees with report 1 on {len(differ)} "
                f"transcript(s) (e.g. {differ[0]}): record a baseline from runs of the same "
                "code and settings")


def entry_from_runs(runs: list[Run], environment: dict[str, Any] | Environment,
                    previous: BaselineEntry | None = None,
                    tolerance: Tolerance | None = None) -> BaselineEntry:
    """A baseline entry from one config's runs in one or more independent processes.

    Error rates and transcripts must be identical across them (check_same_transcripts); the
    throughput is the median of the processes' medians, and with two or more processes their
    medians are kept, so the band comes from the spread between processes."""
    check_same_transcripts(runs)
    for each in runs:
        check_countable(each)
    check_same_counters(runs)
    for each in runs:  # the entry keeps the edit counts: never ones the transcripts disagree with
        check_edits(each)
    run = runs[0]
    predictions = {u.id: u.prediction for u in run.utterances}
    if not isinstance(environment, dict):  # formats.model.Environment
        environment = environment.model_dump()
    packages = environment.get("packages", {})
    device = environment.get("device", {})
    kept = previous.tolerance if previous is not None else Tolerance()
    metrics = {name: getattr(run.metrics, name) for name in GATED_METRICS}
    if any(r.counters_only for r in runs):  # nothing timed: the throughput stays as it was
        metrics["samples_per_second"], noise = _untimed_noise(runs, previous)
    else:
        # every run timed: each has samples/s and a throughput (formats.model.Run checks)
        per_process = [r.metrics.samples_per_second for r in runs
                       if r.metrics.samples_per_second is not None]
        throughputs = [r.throughput for r in runs if r.throughput is not None]
        metrics["samples_per_second"] = statistics.median(per_process)
        per_pass = [v for t in throughputs for v in t.samples_per_second_per_pass]
        noise = {"samples_per_second_rsd": max(t.samples_per_second_rsd for t in throughputs),
                 "passes": len(per_pass),
                 "samples_per_second_per_pass": per_pass,
                 "samples_per_second_per_process": per_process if len(runs) > 1 else []}
    return BaselineEntry.model_validate({
        "metrics": metrics,
        "tolerance": kept.over(tolerance),
        "noise": noise,
        "predictions_sha256": predictions_digest(predictions),
        "predictions": predictions,
        # the normalizer of wer_normalized and each utterance's edit counts (gate.accuracy)
        "normalizer": run.metrics.normalizer,
        "edits": {u.id: u.edits for u in run.utterances if u.edits is not None},
        "environment": {**{k: packages.get(k) for k in ENVIRONMENT_KEYS},
                        "device": device.get("name"), **device.get("environment", {})},
        "commit": environment.get("git", {}).get("commit"),
        "updated": dt.datetime.now(dt.timezone.utc).date().isoformat(),
        "counters": run.counters,  # exact work counts, compared exactly (gate/counters.py)
        "model": run.model,  # the model's identity: another model's run is refused (compare)
    })


def _untimed_noise(runs: list[Run], previous: BaselineEntry | None
                   ) -> tuple[float, dict[str, Any]]:
    """The samples/s and noise of an entry refreshed from counters-only runs: the previous
    entry's, as recorded (the runs timed nothing); a new entry needs a timed run."""
    config_id = runs[0].config.id
    if not all(r.counters_only for r in runs):
        raise AsrbenchError(f"{config_id}: the reports mix counters-only and timed runs: "
                            "record from runs of one kind")
    if previous is None:
        raise AsrbenchError(f"{config_id}: a counters-only run measured no throughput, and "
                            "there is no entry to keep one from: record the entry from a timed "
                            "run first (asrbench run without --counters-only)")
    return previous.metrics.samples_per_second, previous.noise.model_dump()


def model_problem(run: Run, entry: BaselineEntry) -> str | None:
    """Why the run's model is not the one the baseline was recorded with (both name weight
    digests and they differ), or None; an entry or run without identity is not checked."""
    mine, theirs = run.model, entry.model
    if mine is None or theirs is None or not mine.weights_sha256 or not theirs.weights_sha256:
        return None
    if mine.weights_sha256 == theirs.weights_sha256:
        return None
    return (f"{run.config.id}: the run's model ({mine.reference}, weights sha256 "
            f"{mine.weights_sha256[:12]}) is not the baseline's ({theirs.reference}, "
            f"{theirs.weights_sha256[:12]}): a different model with the same short name; "
            "record a baseline for it (asrbench baseline update ...) or use the model the "
            "baseline was made with")


def check_model(run: Run, entry: BaselineEntry) -> None:
    """Refuse (AsrbenchError) a run whose model weights differ from the baseline's."""
    problem = model_problem(run, entry)
    if problem:
        raise AsrbenchError(problem)


def counters_into(entry: BaselineEntry | None, runs: list[Run]) -> BaselineEntry:
    """`entry` with the counters of `runs` (one config, one or more processes) and nothing else
    changed: for recording the work counts from a run whose throughput must not become the
    baseline's (a loaded runner, one pass). The entry must exist and the runs must have decoded
    its transcripts: counts of other transcripts are counts of other work."""
    run = runs[0]
    if entry is None:
        raise AsrbenchError(f"{run.config.id}: --counters-only needs an existing entry to add "
                            "the counters to; record the whole entry first")
    check_same_transcripts(runs)
    for each in runs:
        check_countable(each)
        check_model(each, entry)  # another model's counts are not recorded
    check_same_counters(runs)
    if run.counters is None:
        raise AsrbenchError(f"{run.config.id}: the report has no counters (a run with "
                            "--no-counters, or an A/B timing round)")
    predictions = {u.id: u.prediction for u in run.utterances}
    if predictions_digest(predictions) != entry.predictions_sha256:
        raise AsrbenchError(f"{run.config.id}: the report's transcripts differ from the "
                            "entry's; --counters-only records counts of the same work only: "
                            "refresh the whole entry instead")
    return entry.model_copy(update={"counters": run.counters})


def update(directory: str | Path, device_class: str, runs: list[Run] | list[list[Run]],
           environment: dict[str, Any] | Environment, tolerance: Tolerance | None = None,
           counters_only: bool = False
           ) -> list[tuple[str, BaselineEntry | None, BaselineEntry]]:
    """Rewrite only the given runs' entries in <directory>/<device_class>.json, atomically.

    `runs` holds one run per config, or per config a list of its runs from several
    independent processes (entry_from_runs). Holds a lock file while reading and writing, so
    two refreshes never interleave. Returns (config id, old entry or None, new entry) for every
    entry written.
    """
    try:
        return _update(directory, device_class, runs, environment, tolerance, counters_only)
    except OSError as exc:  # a read-only directory, a directory where the file should be, ...
        where = baseline_path(directory, device_class)
        raise AsrbenchError(f"cannot write baseline file {where} "
                            f"({exc.strerror or exc})") from None


def _update(directory: str | Path, device_class: str, runs: list[Run] | list[list[Run]],
            environment: dict[str, Any] | Environment, tolerance: Tolerance | None,
            counters_only: bool = False
            ) -> list[tuple[str, BaselineEntry | None, BaselineEntry]]:
    path = baseline_path(directory, device_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=120):
        written, changes = updated(directory, device_class, runs, environment, tolerance,
                                   counters_only)
        write_json_atomic(path, dump(written))
    return changes


def updated(directory: str | Path, device_class: str, runs: list[Run] | list[list[Run]],
            environment: dict[str, Any] | Environment, tolerance: Tolerance | None = None,
            counters_only: bool = False
            ) -> tuple[BaselineFile, list[tuple[str, BaselineEntry | None, BaselineEntry]]]:
    """The baseline file of `device_class` as update() would write it, and its changes,
    written nowhere: every refusal (an unreadable file, runs that cannot be recorded) is
    raised here. A refresh of several device classes asks this of each before writing any."""
    document = load_for(directory, device_class)
    entries = dict(document.entries) if document is not None else {}
    changes = []
    for group in runs:
        group = [r if isinstance(r, Run) else Run.model_validate(r)
                 for r in (group if isinstance(group, list) else [group])]
        config_id = group[0].config.id
        old = entries.get(config_id)
        new = (counters_into(old, group) if counters_only
               else entry_from_runs(group, environment, old, tolerance))
        entries[config_id] = new
        changes.append((config_id, old, new))
    written = BaselineFile.model_validate({"schema": SCHEMA_VERSION,
                                           "device_class": device_class,
                                           "entries": dict(sorted(entries.items()))})
    return written, changes

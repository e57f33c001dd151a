"""What asrbench's own tests build their data with (a plain module, not a test module:
importing it collects no tests and runs no fixtures). Test modules import these from here, never
from one another; fixtures live in conftest.py. Numbers are made up; every argument overrides
one field.

- make_run, make_entry, make_report, make_verdict, make_contention: typed records
  (asrbench.formats.model: Run, BaselineEntry, Report, Verdict) and a run's measured contention;
- make_run_document, make_entry_document, make_report_document, write_report: the same as JSON
  documents (dicts, as files hold them: hand-built, valid schema 1) and a report's file;
- BENCH_FILE, DOOR_CONFIGS, door_report_document, door_run_document, counters_document: a
  report the pytest door judges with --asrbench-from-report (two configs whose ids their
  settings give, a counted pass's counters), and the benchmark tests to judge it with;
- embedded_rows, write_cv_table: Common Voice tables of the embedded corpus and throwaway ones;
- run_cli, one_line_error, SECRET: run an `asrbench` command in this process (user errors
  raised), the one-line error it printed, a password planted in inputs;
- make_real_history: one real `asrbench run` of the embedded default, six reports of it in a
  history store, with a throughput step planted at a known commit (the `real_history` fixture
  in conftest.py);
- write_tiny_whisper: a tiny random Whisper for tests of the machinery around a model.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asrbench.cli.main import parse
from asrbench.config.settings import EMBEDDED_CORPUS, BenchConfig
from asrbench.formats.model import (
    COUNTER_VERSION,
    SCHEMA_VERSION,
    VERDICTS,
    BaselineEntry,
    Report,
    Run,
    Verdict,
    predictions_digest,
)
from asrbench.gate.accuracy import EDIT_INDEX
from asrbench.history.store import add_report

ROOT = Path(__file__).resolve().parents[1]

HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent",
          "locale", "segment"]


# -- typed records -----------------------------------------------------------------------------

def rsd(rates: tuple[float, ...] | list[float]) -> float:
    """Relative standard deviation (stdev / mean) of per-pass rates; 0 for a single pass."""
    return statistics.stdev(rates) / statistics.fmean(rates) if len(rates) > 1 else 0.0


def with_own_error_rates(run: dict[str, Any]) -> dict[str, Any]:
    """`run` (a report's run as JSON) with the error rates its utterances' edit counts give
    (corpus level), as `asrbench run` writes them: the gate refuses a run whose rates are not
    those. A rate over no words or characters is left as it is (the gate checks none)."""
    rows = [u["edits"] for u in run["utterances"]]
    for metric, (errors, length) in EDIT_INDEX.items():
        total = sum(row[length] for row in rows)
        if total:
            run["metrics"][metric] = sum(row[errors] for row in rows) / total
    return run


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
    throughput = run.throughput
    assert throughput is not None, "make_run() always records the passes' throughput"
    return BaselineEntry.model_validate({
        "metrics": {k: getattr(run.metrics, k)
                    for k in ("wer", "wer_normalized", "cer", "samples_per_second")},
        "tolerance": tolerance,
        "noise": {"samples_per_second_rsd": throughput.samples_per_second_rsd,
                  "passes": len(throughput.samples_per_second_per_pass),
                  "samples_per_second_per_pass": list(throughput.samples_per_second_per_pass)},
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


def make_verdict(config_id: str, metric: str, verdict: VERDICTS, value: float | None,
                 baseline: float | None, delta: float | None = None,
                 allowed: float | None = None, note: str = "") -> Verdict:
    """A verdict from its fields in order."""
    return Verdict(config_id=config_id, metric=metric, verdict=verdict, value=value,
                   baseline=baseline, delta=delta, allowed=allowed, note=note)


# -- Common Voice tables ---------------------------------------------------------------------

def embedded_rows(locale: str) -> list[dict[str, str]]:
    """The embedded corpus's table for a locale, as dicts."""
    with open(EMBEDDED_CORPUS / locale / "test.tsv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_cv_table(directory: Path, rows: list[dict[str, str]], split: str = "test") -> Path:
    """Write a Common Voice <split>.tsv with the standard header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{split}.tsv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, delimiter="\t", quoting=csv.QUOTE_NONE,
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in HEADER})
    return path


# -- the same as JSON documents (dicts, as files hold them) -----------------------------------

def make_run_document(wer: float = 0.2, cer: float = 0.1,
                      rates: tuple[float, ...] | list[float] = (10.0, 10.0, 10.0),
                      predictions: dict[str, str] | None = None) -> dict[str, Any]:
    """A run dict of config "cfg" on "cpu": these error rates, these samples/s per pass."""
    predictions = predictions or {"a": "hello world"}
    mean = sum(rates) / len(rates)
    spread = 0.0 if len(set(rates)) == 1 else (
        math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)) / mean)
    return {"config": {"id": "cfg"}, "device": {"class": "cpu"},
            "metrics": {"wer": wer, "wer_normalized": wer, "cer": cer,
                        "samples_per_second": sorted(rates)[len(rates) // 2]},
            "throughput": {"samples_per_second_per_pass": list(rates),
                           "samples_per_second_rsd": spread},
            "utterances": [{"id": k, "prediction": v} for k, v in predictions.items()]}


def make_entry_document(run: dict[str, Any], **tolerance: float) -> dict[str, Any]:
    """The baseline entry recorded from a make_run_document() dict, with these tolerances."""
    predictions = {u["id"]: u["prediction"] for u in run["utterances"]}
    throughput = run["throughput"]
    return {"metrics": {k: run["metrics"][k]
                        for k in ("wer", "wer_normalized", "cer", "samples_per_second")},
            "tolerance": tolerance,
            "noise": {"samples_per_second_rsd": throughput["samples_per_second_rsd"],
                      "passes": len(throughput["samples_per_second_per_pass"]),
                      "samples_per_second_per_pass": throughput["samples_per_second_per_pass"]},
            "predictions": predictions, "predictions_sha256": predictions_digest(predictions)}


# -- report documents --------------------------------------------------------------------------

def make_report_document(commit: str | None = "a" * 40, sps: float = 10.0, wer: float = 0.2,
                         cer: float = 0.1, config_id: str = "cfg", device_class: str = "cpu",
                         per_pass: list[float] | None = None,
                         created: str = "2026-01-01T00:00:00+00:00",
                         predictions: dict[str, str] | None = None, hostname: str = "host",
                         compilations: dict[str, Any] | None = None,
                         wer_normalized: float | None = -1.0,
                         extra_runs: list[dict[str, Any]] | None = None,
                         branch: str | None = None) -> dict[str, Any]:
    """A valid schema-1 report document with one run (more with extra_runs)."""
    per_pass = per_pass or [sps * 0.99, sps, sps * 1.01]
    predictions = predictions or {"u1": "hello world", "u2": "good morning"}
    mean = sum(per_pass) / len(per_pass)
    spread = 0.0 if len(per_pass) < 2 else (
        (sum((p - mean) ** 2 for p in per_pass) / (len(per_pass) - 1)) ** 0.5 / mean)
    run = {"config": {"id": config_id}, "device": {"class": device_class, "kind": "cpu"},
           "metrics": {"wer": wer, "wer_normalized": wer if wer_normalized == -1.0
                       else wer_normalized, "cer": cer, "samples_per_second": sps},
           "throughput": {"samples_per_second_per_pass": per_pass,
                          "samples_per_second_rsd": spread},
           "timings": {"compilations": compilations},
           "dataset": {"utterances": len(predictions)},
           "utterances": [{"id": k, "prediction": v, "reference": v}
                          for k, v in predictions.items()]}
    git = {"commit": commit, "dirty": False}
    if branch:
        git["branch"] = branch
    return {"schema": 1,
            "environment": {"git": git, "device": {"class": device_class, "kind": "cpu"},
                            "packages": {"asrbench": "0.1.0"}, "created": created,
                            "hostname": hostname, "python": "3.11.7",
                            "platform": "Linux-6.1-x86_64-with-glibc2.36", "cpu_count": 2},
            "runs": [run] + list(extra_runs or [])}


def write_report(path: Path, document: dict[str, Any]) -> Path:
    """Write a report document as JSON (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def run_cli(argv: list[str]) -> int:
    """Run an `asrbench` command in this process, its user errors raised (not printed)."""
    args = parse(argv)
    return args.func(args)


#: a password planted in inputs: it must appear in no output or file
SECRET = "S3cr3t-pw-XYZ"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The user error an `asrbench` command printed: one line, prefixed, no traceback."""
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("asrbench: error: ") and "\n" not in err, err
    assert "Traceback" not in err and "Traceback" not in captured.out, err
    return err


# -- a report the pytest door judges (--asrbench-from-report: no model runs) ---------------------

#: the repository's benchmark tests (copied into a pytester project to judge a report)
BENCH_FILE = ROOT / "benchmarks" / "test_asr_regression.py"
#: two configs the pytest door accepts from a report (their ids are what BenchConfig gives)
DOOR_CONFIGS = [BenchConfig(dataset_config="en", language="english", limit=3, counters=False),
                BenchConfig(dataset_config="en", language="english", limit=4, counters=False)]
DIGEST_A = "a" * 64  # the model weights' digest of door_run_document
NORMALIZER = "whisper-english/1"


def counters_document(**changes: Any) -> dict[str, Any]:
    """A counted pass's counters as a report stores them (numbers made up)."""
    return {"version": COUNTER_VERSION, "selection": "first batch", "utterances": ["u1"],
            "rows": 1, "real_rows": 1, "replay_bypassed": False, "encoder_calls": 1,
            "decode_step_ops": {"aten.mm f32": 7}, "decode_steps": 3, "steady_steps": 2,
            "flops": 100, "flops_per_utterance": 100.0, "host_syncs": 3,
            "host_syncs_per_token": 1.0, "tokens": 3, **changes}


def door_run_document(config: BenchConfig, counted: bool = True) -> dict[str, Any]:
    """One of DOOR_CONFIGS' runs as a report stores it: three utterances, a model and its
    digest, the normalizer, counters unless `counted` is False."""
    predictions = {"u1": "the cat sat", "u2": "on the mat", "u3": "it rained"}
    run = make_run(config.id, rates=(2.0, 2.02, 1.98), predictions=predictions,
                   config={**config.to_dict(), "counters": counted},
                   model={"reference": "openai/whisper-base", "source": "x",
                          "weights_sha256": DIGEST_A},
                   counters=counters_document() if counted else None)
    document = run.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["metrics"]["normalizer"] = NORMALIZER
    return document


def door_report_document() -> dict[str, Any]:
    """A clean report document of both DOOR_CONFIGS' runs."""
    return make_report().model_dump(mode="json", by_alias=True) | {
        "runs": [door_run_document(c) for c in DOOR_CONFIGS]}


# -- a history of real runs with a planted slowdown ---------------------------------------------

REAL_RUN_ARGS = ["run", "--dataset-config", "en", "--language", "english", "--limit", "4",
                 "--batch-size", "4", "--generation-max-length", "40", "--passes", "2",
                 "--no-progress"]
#: The throughput planted in each real run, as a share of a fixed level: runs 1-3 at full speed,
#: runs 4-6 at half of it, each pass within +-1% (the spread a quiet machine shows). The
#: measured samples/s of a 4-clip run on a shared 2-core machine moves by tens of percent from
#: one moment to the next, so a step measured there is no reliable test of change detection; a
#: planted one is the same on every machine, and the transcripts, error rates and reports
#: around it are real.
PLANTED_LEVELS = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
PLANTED_PASS_SPREAD = [0.99, 1.01]
PLANTED_SAMPLES_PER_SECOND = 10.0
PLANTED_AT = 3  # index of the first slow run (run 4)
#: the real run's own report (its throughput as measured), beside the six planted copies
REAL_RUN_REPORT = "measured.json"


def plant_throughput(path: Path, level: float) -> None:
    """Rewrite a real report's throughput so each run does `level` x PLANTED_SAMPLES_PER_SECOND
    samples/s (passes spread by PLANTED_PASS_SPREAD); rtfx and tokens/s scale with it."""
    document = json.loads(path.read_text(encoding="utf-8"))
    for run in document["runs"]:
        utterances = run["dataset"]["utterances"]
        rates = [PLANTED_SAMPLES_PER_SECOND * level * s for s in PLANTED_PASS_SPREAD]
        scale = statistics.median(rates) / run["metrics"]["samples_per_second"]
        run["throughput"].update({
            "samples_per_second_per_pass": rates, "samples_per_second_min": min(rates),
            "samples_per_second_max": max(rates),
            "samples_per_second_rsd": statistics.stdev(rates) / statistics.fmean(rates)})
        run["metrics"]["samples_per_second"] = statistics.median(rates)
        for name in ("rtfx", "tokens_per_second"):
            if run["metrics"].get(name) is not None:
                run["metrics"][name] *= scale
        if run["timings"].get("pass_seconds") is not None:
            run["timings"]["pass_seconds"] = [utterances / r for r in rates]
            run["timings"]["pass_seconds_median"] = statistics.median(
                run["timings"]["pass_seconds"])
    path.write_text(json.dumps(document), encoding="utf-8")


def make_real_history(directory: Path) -> tuple[str, list[Path], list[str]]:
    """Six reports of the embedded default (English, 4 clips, 2 passes) in an SQLite store,
    each under its own commit: (store path, report paths, commits). One real `asrbench run`
    makes them all: its transcripts, error rates, counters and environment are real and the
    same in each copy (as six runs of the same code give), and what a history test looks at
    across runs is planted: the throughput (PLANTED_LEVELS) and the time each report was made
    (a minute apart, in run order). Six processes of the same run cost minutes of CI and
    add nothing but machine noise, which the planted throughput replaces anyway."""
    url = str(directory / "history.sqlite")
    measured = directory / REAL_RUN_REPORT
    done = subprocess.run([sys.executable, "-m", "asrbench", *REAL_RUN_ARGS,
                           "--report", str(measured)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"asrbench run exited {done.returncode}: {done.stderr[-1500:]}")
    document = json.loads(measured.read_text(encoding="utf-8"))
    made = datetime.datetime.fromisoformat(document["environment"]["created"])
    reports, commits = [], []
    for n, level in enumerate(PLANTED_LEVELS, start=1):
        path = directory / f"run{n}.json"
        document["environment"]["created"] = (
            made + datetime.timedelta(minutes=n - len(PLANTED_LEVELS))).isoformat()
        path.write_text(json.dumps(document), encoding="utf-8")
        plant_throughput(path, level)
        commit = f"{n:02d}" + "5eed" * 9 + "00"
        add_report(url, path, commit=commit, branch="main")
        reports.append(path)
        commits.append(commit)
    return url, reports, commits


# -- a tiny Whisper with the real tokenizer, for tests of the machinery around a model ----------

#: What the tiny model changes in whisper-base's config: one layer each side, width 32. The
#: vocabulary, mel bins, 30-second window (1500 encoder positions) and generation config stay,
#: so every asrbench path (prompt, suppression, static shapes, tokenizer) treats it as Whisper.
TINY_WHISPER = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
                "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}


def write_tiny_whisper(directory: Path) -> Path:
    """A random Whisper of about 1.7 M weights (most of them the 51,865-token embedding) in a
    model folder `--model` accepts: safetensors weights, whisper-base's tokenizer, feature
    extractor and generation config. Its transcripts are nonsense (it never ends a row before
    the length cap) but deterministic: the same weights give the same tokens in every process.
    A clip costs milliseconds instead of whisper-base's seconds on a 2-core CPU, so the tests of
    A/B rounds, ranks and gates that run many processes pay for the process, not the model."""
    # lazy: torch and transformers load in seconds; only the tests that make the model pay
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from asrbench.measure.bundled import ensure_converted

    base = ensure_converted(progress=False)
    config = WhisperConfig.from_pretrained(base)
    config.update(TINY_WHISPER)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(base)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    WhisperProcessor.from_pretrained(base).save_pretrained(directory)
    return directory

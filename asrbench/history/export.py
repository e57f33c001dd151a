"""Exports of a report in the formats other benchmark tools read.

pytest-benchmark (`--format pytest-benchmark`): the JSON that `pytest --benchmark-json` writes
and `pytest-benchmark compare`, its storage and dashboards built on it read
(machine_info, commit_info, benchmarks[], datetime, version). Each run of the report is one
benchmark: a "round" is one timed pass over the split (one iteration), so the round's time is
utterances / that pass's samples/s, and `ops` is timed passes per second. The statistics follow
pytest-benchmark's definitions (sample standard deviation; quartiles by Wikipedia's method 3
for an odd number of rounds and method 2 for an even number; Tukey's 1.5 IQR fences), and the
rounds themselves are in stats.data. The error rates and samples/s ride along in extra_info.

github-action-benchmark (`--format github-action-benchmark`): its custom tools' input, a JSON
list of {"name", "unit", "value", "range", "extra"}. One file holds one direction, as the
action takes one tool per step: `--direction bigger` (tool customBiggerIsBetter) holds
samples/s, `--direction smaller` (tool customSmallerIsBetter) the error rates (WER,
normalized WER where defined, CER). Names are stable across runs ("<config id> [<device class>]
<metric>"), so the action's charts follow one config over commits.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from bisect import bisect_left, bisect_right
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.merge import refuse_shards
from asrbench.formats.model import Report, Run, ThroughputStats, dump

FORMATS = ("pytest-benchmark", "github-action-benchmark")
DIRECTIONS = ("bigger", "smaller")
#: the pytest-benchmark release whose JSON layout this export follows (and was tested with)
PYTEST_BENCHMARK_VERSION = "5.3.1"


# -- pytest-benchmark ---------------------------------------------------------------------------

def _quartiles(data: list[float]) -> tuple[float, float]:
    """Q1 and Q3 as pytest-benchmark defines them (sorted data)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2:  # method 3: interpolate around the median's neighbours
        k, r = divmod(n, 4)
        if r == 1:
            q1 = 0.25 * data[k - 1] + 0.75 * data[k]
            q3 = 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        else:
            q1 = 0.75 * data[k] + 0.25 * data[k + 1]
            q3 = 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
        return q1, q3
    half = n // 2  # method 2: medians of the lower and the upper half
    return statistics.median(data[:half]), statistics.median(data[half:])


def round_stats(rounds: list[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` object for these round times (seconds, one iteration each)."""
    if not rounds or not all(math.isfinite(r) and r > 0 for r in rounds):
        raise ValueError("rounds must be positive, finite seconds")
    data = sorted(rounds)
    n = len(data)
    mean = statistics.fmean(rounds)
    stddev = statistics.stdev(rounds) if n > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(1 for v in rounds if v < low_fence or v > high_fence)
    stddev_outliers = sum(1 for v in rounds if v < mean - stddev or v > mean + stddev)
    if n == 1:
        ld15iqr = hd15iqr = data[0]
    else:
        ld15iqr = data[bisect_left(data, low_fence)]
        hd15iqr = data[bisect_right(data, high_fence) - 1]
    total = math.fsum(rounds)
    return {"min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": n,
            "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
            "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
            "outliers": f"{stddev_outliers};{iqr_outliers}", "ld15iqr": ld15iqr,
            "hd15iqr": hd15iqr, "ops": n / total, "total": total, "data": list(rounds),
            "iterations": 1}


def pass_seconds(run: Run) -> list[float]:
    """Each timed pass's seconds: utterances / that pass's samples/s."""
    utterances = run.dataset.utterances if run.dataset.utterances else len(run.utterances)
    if not utterances:
        raise AsrbenchError(f"run {run.config.id} has no utterances: its passes have no time")
    seconds = []
    for number, sps in enumerate(_throughput(run).samples_per_second_per_pass, start=1):
        value = utterances / sps
        # A denormal rate (5e-324 samples/s) makes an infinite time, a huge one a time whose
        # inverse overflows: neither is a pass that can be charted.
        if not (math.isfinite(value) and value > 0 and math.isfinite(1.0 / value)):
            raise AsrbenchError(f"run {run.config.id}: timed pass {number} has samples/s "
                                f"{sps!r}, which gives no finite pass time: the report cannot be "
                                "exported")
        seconds.append(value)
    return seconds


def _throughput(run: Run) -> ThroughputStats:
    """The run's throughput; a counters-only run has none to export."""
    if run.counters_only or run.throughput is None:
        raise AsrbenchError(f"run {run.config.id} is counters-only: it measured no throughput, "
                            "so there is nothing to export; export a timed run's report")
    return run.throughput


def _check_run(run: Run) -> ThroughputStats:
    """Numbers an export carries that the report format leaves open: refuse the impossible.
    The run's throughput."""
    throughput = _throughput(run)
    rtfx = run.metrics.rtfx
    if rtfx is not None and not (math.isfinite(rtfx) and rtfx >= 0):
        raise AsrbenchError(f"run {run.config.id}: metrics.rtfx is {rtfx!r}: a real-time factor "
                            "is a finite number >= 0; the report cannot be exported")
    return throughput


def _finite_stats(run: Run, stats: dict[str, Any]) -> dict[str, Any]:
    bad = [k for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise AsrbenchError(f"run {run.config.id}: its pass times give a non-finite "
                            f"{bad[0]} (samples/s too large or too small to export)")
    return stats


def _round_stats(run: Run) -> dict[str, Any]:
    try:
        return round_stats(pass_seconds(run))
    except (ValueError, OverflowError, ZeroDivisionError) as exc:
        raise AsrbenchError(f"run {run.config.id}: its pass times cannot be summarised "
                            f"({exc})") from None


def _machine_info(environment: dict[str, Any]) -> dict[str, Any]:
    platform_text = str(environment.get("platform") or "")
    device = environment.get("device") or {}
    return {
        "node": environment.get("hostname") or "",
        "processor": (device.get("environment") or {}).get("cpu") or "",
        "machine": next((p for p in platform_text.split("-")
                         if p in ("x86_64", "aarch64", "arm64", "ppc64le", "s390x")), ""),
        "python_implementation": "CPython",
        "python_version": environment.get("python") or "",
        "system": platform_text.split("-")[0] if platform_text else "",
        "release": "",
        "platform": platform_text,
        "cpu": {"brand_raw": device.get("name") or "", "count": environment.get("cpu_count")},
        "asrbench_device": device,
    }


def _commit_info(environment: dict[str, Any], commit: str | None, branch: str | None
                 ) -> dict[str, Any]:
    git = environment.get("git") or {}
    return {"id": commit or git.get("commit") or "unversioned", "time": None,
            "author_time": None, "dirty": bool(git.get("dirty")), "project": "asrbench",
            "branch": branch or git.get("branch") or "(unknown)"}


def pytest_benchmark_document(report: Report, commit: str | None = None,
                              branch: str | None = None) -> dict[str, Any]:
    """The report as a pytest-benchmark JSON document (one benchmark per run)."""
    _refuse_interrupted(report)
    environment = dump(report)["environment"]
    benchmarks = []
    for run in report.runs:
        throughput = _check_run(run)
        device_class = run.device.class_
        metrics = run.metrics
        benchmarks.append({
            "group": f"asrbench {device_class}",
            "name": run.config.id,
            "fullname": f"asrbench::{device_class}::{run.config.id}",
            "params": {"config": run.config.id},
            "param": run.config.id,
            "extra_info": {
                "device_class": device_class,
                "utterances": run.dataset.utterances or len(run.utterances),
                "samples_per_second": metrics.samples_per_second,
                "samples_per_second_per_pass": list(throughput.samples_per_second_per_pass),
                "samples_per_second_rsd": throughput.samples_per_second_rsd,
                "wer": metrics.wer, "wer_normalized": metrics.wer_normalized,
                "cer": metrics.cer, "rtfx": metrics.rtfx,
                "round": "one timed pass over the split",
            },
            "options": {"disable_gc": False, "timer": "perf_counter",
                        "min_rounds": len(throughput.samples_per_second_per_pass),
                        "warmup": True},
            "stats": _finite_stats(run, _round_stats(run)),
        })
    created = environment.get("created") or dt.datetime.now(dt.timezone.utc).isoformat()
    return {"machine_info": _machine_info(environment),
            "commit_info": _commit_info(environment, commit, branch),
            "benchmarks": benchmarks, "datetime": created, "version": PYTEST_BENCHMARK_VERSION}


# -- github-action-benchmark ---------------------------------------------------------------------

def _name(run: Run, metric: str) -> str:
    return f"{run.config.id} [{run.device.class_}] {metric}"


def github_action_benchmark_entries(report: Report, direction: str) -> list[dict[str, Any]]:
    """customBiggerIsBetter (direction "bigger": samples/s) or customSmallerIsBetter
    ("smaller": WER, normalized WER, CER) entries."""
    _refuse_interrupted(report)
    if direction not in DIRECTIONS:
        raise AsrbenchError(f"--direction {direction!r}: choose bigger (samples/s, tool "
                            "customBiggerIsBetter) or smaller (error rates, tool "
                            "customSmallerIsBetter)")
    entries: list[dict[str, Any]] = []
    for run in report.runs:
        throughput = _check_run(run)
        per_pass = throughput.samples_per_second_per_pass
        utterances = run.dataset.utterances or len(run.utterances)
        if direction == "bigger":
            try:
                spread = statistics.stdev(per_pass) if len(per_pass) > 1 else 0.0
            except (ValueError, OverflowError) as exc:
                raise AsrbenchError(f"run {run.config.id}: its samples/s per pass cannot be "
                                    f"summarised ({exc})") from None
            if not math.isfinite(spread):
                raise AsrbenchError(f"run {run.config.id}: the spread of its samples/s per "
                                    "pass is not finite: the report cannot be exported")
            entries.append({
                "name": _name(run, "samples/s"), "unit": "samples/s",
                "value": run.metrics.samples_per_second, "range": f"± {spread:.4g}",
                "extra": f"median of {len(per_pass)} timed pass(es) over {utterances} "
                         f"utterances\nRSD {throughput.samples_per_second_rsd:.2%}"})
            continue
        for metric, label in (("wer", "WER"), ("wer_normalized", "normalized WER"),
                              ("cer", "CER")):
            value: float | None = getattr(run.metrics, metric)
            if value is None:  # normalization left no reference words: nothing to chart
                continue
            entries.append({"name": _name(run, label), "unit": label, "value": value,
                            "extra": f"{utterances} utterances"})
    return entries


def _refuse_interrupted(report: Report) -> None:
    """What no chart may take: an interrupted run's report, one without runs, a shard's (its
    samples/s, of a part of the split, would chart under the whole config's name) and one with
    an id twice (two series of one name)."""
    if report.interrupted:
        raise AsrbenchError("the report is of an interrupted run: export a finished run's "
                            "report")
    if not report.runs:
        raise AsrbenchError("the report holds no runs to export")
    refuse_shards(report, "the report", "export")


def export(report: Report, fmt: str, direction: str | None = None, commit: str | None = None,
           branch: str | None = None) -> Any:
    """The document of one export format (what `asrbench export` writes)."""
    if fmt == "pytest-benchmark":
        if direction is not None:
            raise AsrbenchError("--direction is for --format github-action-benchmark only")
        return pytest_benchmark_document(report, commit, branch)
    if fmt == "github-action-benchmark":
        if direction is None:
            raise AsrbenchError("--format github-action-benchmark needs --direction: bigger "
                                "(samples/s, for tool customBiggerIsBetter) or smaller (error "
                                "rates, for tool customSmallerIsBetter)")
        return github_action_benchmark_entries(report, direction)
    raise AsrbenchError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")

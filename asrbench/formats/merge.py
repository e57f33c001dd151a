"""Shard reports pooled into one report (`asrbench merge`): pure arithmetic on reports.

Scheduler shards (`asrbench run --shard I/N`) each decode part of a split with the unsharded
config; pooled, they are the unsharded run: its transcripts (the union, in split order), its
error rates (summed edits over summed words, never a mean of the shards' rates), its counters
(every shard counted the whole split's first batch; merged only where the shards agree), and a
throughput that is stated for what it is: all samples over the shards' summed timed pass
seconds, i.e. per device of work, not the wall time of the job.

Everything a user can get wrong is refused in one line before anything is written: a shard
missing or given twice, shards of different configs, code versions, counts or splits.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.environment import CPU_BF16, CPU_ID
from asrbench.formats.model import (
    Compilations,
    Counters,
    DatasetInfo,
    Differing,
    MergeInfo,
    Metrics,
    RankTimings,
    ReferenceAgreement,
    Report,
    Run,
    Skip,
    ThroughputStats,
    Timings,
    UtteranceResult,
    build_report,
    most_starved,
    rate_spread,
)

#: how a merged run's samples/s was pooled (also in the run's `merged.throughput`)
THROUGHPUT_RULE = ("all samples / the shards' summed timed pass seconds, pass by pass (work "
                   "per device, as one process measures it; not the job's wall time)")
#: counters fields that are informational and differ between equal runs
_INFORMATIONAL = {"seconds", "peak_device_memory_bytes", "first_calls"}


@dataclass
class _Shard:
    path: str
    report: Report
    run: Run


def refuse_shards(report: Report, path: Any, what: str) -> None:
    """A shard report is part of a split: `compare`, `baseline update` and the other gating
    doors refuse it in one line, pointing at `asrbench merge`; and a report with one config id
    twice (refuse_inconsistent_ids): every door takes one whole run per config."""
    for run in report.runs:
        if run.shard is not None:
            raise AsrbenchError(
                f"{path}: {run.config.id} is shard {run.shard.index}/{run.shard.count} of its "
                f"split, not a whole run; {what} takes the shards merged: asrbench merge "
                "<every shard's report> --report <merged report>")
    refuse_inconsistent_ids(report, path)


def refuse_inconsistent_ids(report: Report, path: Any) -> None:
    """A run's id is its baseline key: refuse a report in which two runs share one (a door
    would judge one of them and drop the other: the pytest door kept the last, `compare`
    judged both), or in which a run's id is not the one its settings give (every door: only
    the pytest door refused it before 2026-12-07)."""
    seen: set[str] = set()
    for run in report.runs:
        if run.config.id in seen:
            raise AsrbenchError(f"{path}: two runs have the id {run.config.id}: a report holds "
                                "one run per config")
        seen.add(run.config.id)
        # the id must be the one its stored settings give (an edited id would be judged
        # against, or recorded into, another config's entry); a config that does not hold
        # its model (a hand-made report: every asrbench writes it) has nothing to check by
        config = run.config
        if "model" in config.model_fields_set and config.derived_id() != config.id:
            raise AsrbenchError(f"{path}: run {config.id}: its settings give the id "
                                f"{config.derived_id()}")


def _percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile, like asrbench.measure.metrics.percentile (numpy's)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _version(report: Report) -> tuple[Any, Any]:
    return report.environment.packages.get("asrbench"), report.environment.git.get("commit")


def _describe_version(version: tuple[Any, Any]) -> str:
    package, commit = version
    return f"asrbench {package or '?'}, commit {str(commit)[:12] if commit else 'unknown'}"


def merge_reports(reports: list[tuple[str, Report]]) -> Report:
    """One report from shard reports ((path, report) pairs): each config's shards pooled.
    AsrbenchError (one line) for anything that does not make one whole run per config."""
    if not reports:
        raise AsrbenchError("asrbench merge needs the shard reports to merge")
    first_path, first = reports[0]
    for path, report in reports:
        if report.interrupted:
            raise AsrbenchError(f"{path}: an interrupted run (its shard is incomplete): run "
                                "that shard again")
        if _version(report) != _version(first):
            raise AsrbenchError(
                f"shards of different code versions: {first_path} "
                f"({_describe_version(_version(first))}) "
                f"and {path} ({_describe_version(_version(report))}): run every shard with one "
                "version")
        for run in report.runs:
            if run.shard is None:
                raise AsrbenchError(f"{path}: {run.config.id} is not a shard (no `shard` in the "
                                    "run): only `asrbench run --shard` reports merge")
    ids = [run.config.id for run in first.runs]
    for path, report in reports[1:]:
        other = [run.config.id for run in report.runs]
        if sorted(other) != sorted(ids):
            raise AsrbenchError(f"shards of different configs: {first_path} holds "
                                f"{', '.join(ids)}; {path} holds {', '.join(other)}")
    runs = []
    for config_id in ids:
        shards = [_Shard(path, report, run) for path, report in reports
                  for run in report.runs if run.config.id == config_id]
        runs.append(merge_runs(shards))
    environment = first.environment.model_dump(mode="json", by_alias=True)
    # local changes in any shard are local changes of the merged run (history and the HTML
    # page flag them): the first shard's flag alone depended on the order shards were given
    dirty = [report.environment.git.get("dirty") for _, report in reports]
    if any(flag is True for flag in dirty):
        environment.setdefault("git", {})["dirty"] = True
    environment["merged_from"] = [
        {"report": str(path), "hostname": report.environment.model_dump().get("hostname"),
         "created": report.environment.model_dump().get("created")}
        for path, report in reports]
    return build_report(runs, environment)


def _check_shards(shards: list[_Shard]) -> None:
    """The refusals: different settings, counts, splits, models or device classes; a shard
    given twice; a shard missing."""
    head = shards[0]
    config_id = head.run.config.id
    settings = head.run.config.model_dump(mode="json")
    for shard in shards[1:]:
        other = shard.run.config.model_dump(mode="json")
        if other != settings:
            differing = sorted(k for k in settings.keys() | other.keys()
                               if settings.get(k) != other.get(k))
            raise AsrbenchError(f"shards of different configs: {config_id} in {head.path} and "
                                f"{shard.path} differ in {', '.join(differing)}")
    for shard in shards[1:]:
        a, b = head.run.shard, shard.run.shard
        assert a is not None and b is not None  # checked by merge_reports
        if b.count != a.count:
            raise AsrbenchError(f"{config_id}: {head.path} is shard {a.index}/{a.count} but "
                                f"{shard.path} is shard {b.index}/{b.count}: shards of one "
                                "merge share their count")
        if b.split_fingerprint != a.split_fingerprint:
            raise AsrbenchError(f"{config_id}: shards of different splits: {head.path} and "
                                f"{shard.path} have other split fingerprints "
                                f"({a.split_fingerprint[:12]}"
                                f" vs {b.split_fingerprint[:12]}: other rows, --limit or "
                                "--max-duration)")
        if shard.run.device.class_ != head.run.device.class_:
            raise AsrbenchError(f"{config_id}: shards of different device classes: "
                                f"{head.run.device.class_} ({head.path}) and "
                                f"{shard.run.device.class_} ({shard.path})")
        weights = (head.run.model.weights_sha256 if head.run.model else None,
                   shard.run.model.weights_sha256 if shard.run.model else None)
        if None not in weights and weights[0] != weights[1]:
            raise AsrbenchError(f"{config_id}: shards of different model weights: {head.path} "
                                f"and {shard.path}")
        if len(shard.run.timings.pass_seconds) != len(head.run.timings.pass_seconds):
            raise AsrbenchError(f"{config_id}: shards with different numbers of timed passes "
                                f"({head.path}: {len(head.run.timings.pass_seconds)}, "
                                f"{shard.path}: {len(shard.run.timings.pass_seconds)}): run "
                                "every shard with one --passes")
    seen: dict[int, str] = {}
    count = head.run.shard.count if head.run.shard else 0
    for shard in shards:
        index = shard.run.shard.index if shard.run.shard else -1
        if index in seen:
            raise AsrbenchError(f"{config_id}: shard {index}/{count} given twice ({seen[index]} "
                                f"and {shard.path})")
        seen[index] = shard.path
    missing = [i for i in range(count) if i not in seen]
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing[:5]) + (", ..." if len(missing) > 5
                                                                   else "")
        raise AsrbenchError(f"{config_id}: shard(s) {listed} missing ({len(seen)} of {count} "
                            "given): merge every shard's report")


def _device(shards: list[_Shard]) -> Any:
    """The first shard's device, less the keys of how its CPU rounds bf16 (cpu_bf16, cpu_id)
    where the shards' differ: shards decoded on processors of two makes are not one
    arithmetic, so a bf16 baseline recorded from the merge compares no transcript exactly."""
    device = shards[0].run.device
    mixed = {key: None for key in (CPU_BF16, CPU_ID)
             if len({repr(s.run.device.environment.get(key)) for s in shards}) > 1}
    if not mixed:
        return device
    return device.model_copy(update={"environment": {**device.environment, **mixed}})


def _counters(shards: list[_Shard]) -> tuple[Counters | None, str]:
    """The shards' counters where they are equal (each counted the whole split's first batch,
    as one process does), else None and why they were not merged."""
    first = shards[0].run.counters
    for shard in shards:
        if shard.run.counters is None:
            return None, (f"not merged: {shard.path} has no counters (--no-counters, or an "
                          "older asrbench)")
    assert first is not None
    reference = first.model_dump(mode="json", exclude=_INFORMATIONAL)
    for shard in shards[1:]:
        assert shard.run.counters is not None
        other = shard.run.counters.model_dump(mode="json", exclude=_INFORMATIONAL)
        if other != reference:
            fields = sorted(k for k in reference.keys() | other.keys()
                            if reference.get(k) != other.get(k))
            return None, (f"not merged: {shard.path} counted other work than {shards[0].path} "
                          f"({', '.join(fields[:4])}); counters are never invented")
    return first.model_copy(update={"seconds": None, "peak_device_memory_bytes": None}), (
        f"merged: all {len(shards)} shards counted {first.selection} of the whole split with "
        "equal counts")


def _reference(shards: list[_Shard]) -> ReferenceAgreement | None:
    """The shards' agreement checks pooled: their transcripts checked, identical ones and the
    differing ones added up; the WER is the largest shard's (a bound, not a pooled rate)."""
    checks = [s.run.reference for s in shards if s.run.reference is not None]
    if not checks:
        return None
    failed = next((c for c in checks if c.error is not None), None)
    if failed is not None:
        return failed
    utterances = sum(c.utterances or 0 for c in checks)
    identical = sum(c.identical or 0 for c in checks)
    differing: list[Differing] = [d for c in checks for d in c.differing]
    return ReferenceAgreement(
        reference=checks[0].reference, requested=checks[0].requested, utterances=utterances,
        identical=identical, share=identical / utterances if utterances else 1.0,
        wer=max(c.wer or 0.0 for c in checks), differing=differing,
        pooled=f"{len(checks)} shards' first transcripts; wer: the largest shard's")


def _timings(shards: list[_Shard], passes: int) -> Timings:
    parts = [s.run.timings for s in shards]
    pass_seconds = [sum(t.pass_seconds[i] for t in parts) for i in range(passes)]
    total = sum(pass_seconds)
    model_seconds = sum((1 - (t.harness_overhead or 0.0)) * sum(t.pass_seconds) for t in parts)
    latencies = [x for s in shards for x in (s.run.shard.latencies if s.run.shard else [])]
    counted = [t.compilations for t in parts if t.compilations is not None]
    compilations = None if len(counted) < len(parts) else Compilations(
        counter=counted[0].counter, warmup=sum(c.warmup for c in counted),
        passes=[sum(c.passes[i] for c in counted) for i in range(passes)])

    def added(name: str) -> float | None:
        values = [getattr(t, name) for t in parts]
        return None if any(v is None for v in values) else sum(values)

    def added_count(name: str) -> int | None:
        values: list[int | None] = [getattr(t, name) for t in parts]
        return None if any(v is None for v in values) else sum(v or 0 for v in values)

    def largest(name: str) -> int | None:
        values = [getattr(t, name) for t in parts if getattr(t, name) is not None]
        return max(values) if values else None

    median = statistics.median(pass_seconds)
    features, detokenize = added("feature_extraction_seconds"), added("detokenize_seconds")
    timings = Timings(
        contention=most_starved(t.contention for t in parts),  # judged as its most starved
        feature_extraction_seconds=features, warmup_seconds=added("warmup_seconds"),
        warmup_batches=added_count("warmup_batches"), pass_seconds=pass_seconds,
        pass_seconds_median=median, passes=passes, batches_per_pass=added_count("batches_per_pass"),
        harness_overhead=1 - model_seconds / total, decoder=parts[0].decoder,
        compilations=compilations, batch_latency_p50=_percentile(latencies, 50),
        batch_latency_p90=_percentile(latencies, 90), detokenize_seconds=detokenize,
        end_to_end_seconds=(features or 0.0) + median + (detokenize or 0.0),
        peak_device_memory_bytes=largest("peak_device_memory_bytes"),
        peak_host_rss_bytes=largest("peak_host_rss_bytes"),
        world_size=parts[0].world_size)
    if all(t.ranks for t in parts):  # data-parallel shards: rank r's work over every shard
        ranks = []
        for rank in range(len(parts[0].ranks or [])):
            mine = [(t.ranks or [])[rank] for t in parts]
            ranks.append(RankTimings(
                rank=rank, utterances=sum(r.utterances for r in mine),
                pass_seconds=[sum(r.pass_seconds[i] for r in mine) for i in range(passes)],
                device=mine[0].device, batches_per_pass=sum(r.batches_per_pass or 0 for r in mine)))
        timings.ranks = ranks
    return timings


def merge_runs(shards: list[Any]) -> Run:
    """One config's shard runs pooled into the unsharded run (see the module's docstring)."""
    _check_shards(shards)
    shards = sorted(shards, key=lambda s: s.run.shard.index)
    head = shards[0].run
    info = head.shard
    assert info is not None
    rows: list[tuple[int, UtteranceResult]] = []
    skipped: dict[tuple[str, str], tuple[int, Skip]] = {}
    for shard in shards:
        run, part = shard.run, shard.run.shard
        if len(part.positions) != len(run.utterances):
            raise AsrbenchError(f"{shard.path}: {run.config.id}: shard.positions has "
                                f"{len(part.positions)} entries for {len(run.utterances)} "
                                "utterances")
        rows += zip(part.positions, run.utterances)
        where = part.skipped_positions or [-1] * len(run.dataset.skipped)
        for position, skip in zip(where, run.dataset.skipped):
            skipped.setdefault((skip.id, skip.reason), (position, skip))
    rows.sort(key=lambda pair: pair[0])
    utterances = [u for _, u in rows]
    if len(utterances) > info.split_utterances:
        raise AsrbenchError(f"{head.config.id}: the shards hold {len(utterances)} utterances "
                            f"of a {info.split_utterances}-utterance split")
    if len(shards) > 1:
        # every usable utterance is in one shard: scored there, or skipped there when it did
        # not decode (a skip of the index is in every shard's list, a decoding failure in its
        # own shard's only). Fewer: a shard's report lost some (edited, truncated).
        seen_in = collections.Counter(key for shard in shards for key in
                                      {(k.id, k.reason) for k in shard.run.dataset.skipped})
        failed = sum(1 for count in seen_in.values() if count < len(shards))
        if len(utterances) + failed < info.split_utterances:
            raise AsrbenchError(
                f"{head.config.id}: the shards account for {len(utterances) + failed} of the "
                f"split's {info.split_utterances} usable utterances ({len(utterances)} scored, "
                f"{failed} that did not decode): a shard's report lost some (edited or "
                "truncated); merge the shards' reports as they were written")
    # One pass in split order: the edit counts summed, and tokens and audio seconds added up
    # in the order one run's scoring adds them (the same float sum).
    missing = next((u.id for u in utterances if u.edits is None), None)
    if missing is not None:
        raise AsrbenchError(f"{head.config.id}: utterance {missing} has no edit counts: error "
                            "rates cannot be pooled")
    sums = [sum(column) for column in zip(*(u.edits for u in utterances))] or [0] * 6
    tokens, audio_seconds = 0, 0.0
    for u in utterances:
        tokens += u.tokens or 0
        audio_seconds += u.audio_seconds or 0.0
    if len({u.id for u in utterances}) != len(utterances):
        raise AsrbenchError(f"{head.config.id}: an utterance appears in two shards: the shards "
                            "were not cut from one split")
    whisper = [s.run.shard.whisper_edits for s in shards]
    if all(w is not None for w in whisper):
        errors, words = (sum(w[0] for w in whisper), sum(w[1] for w in whisper))
        wer_whisper: float | None = errors / words if words else None
    else:
        wer_whisper = None
    passes = len(head.timings.pass_seconds)
    timings = _timings(shards, passes)
    rates = [len(utterances) / s for s in timings.pass_seconds]
    median = timings.pass_seconds_median or statistics.median(timings.pass_seconds)
    counters, counters_note = _counters(shards)
    ordered_skips = [s for _, s in sorted(skipped.values(), key=lambda pair: pair[0])]
    excluded = [s.run.dataset.normalized_wer_excluded for s in shards]
    return Run(
        config=head.config, device=_device(shards),
        metrics=Metrics(wer=sums[0] / sums[1] if sums[1] else 0.0,
                        wer_normalized=sums[4] / sums[5] if sums[5] else None,
                        cer=sums[2] / sums[3] if sums[3] else 0.0,
                        normalizer=head.metrics.normalizer,
                        wer_normalized_whisper=wer_whisper,
                        samples_per_second=rate_spread(rates)[0],
                        rtfx=audio_seconds / median, tokens_per_second=tokens / median,
                        tokens_per_sample=tokens / len(utterances)),
        throughput=ThroughputStats.of(rates),
        timings=timings,
        dataset=DatasetInfo(name=head.dataset.name, utterances=len(utterances),
                            audio_seconds=audio_seconds, skipped=ordered_skips,
                            skipped_count=len(ordered_skips),
                            normalized_wer_excluded=None if None in excluded else sum(excluded)),
        passes_identical=all(bool(s.run.passes_identical) for s in shards),
        reference=_reference(shards), utterances=utterances, counters=counters,
        model=head.model,
        # the matrix section's limits the shards were run under (`asrbench run --matrix`);
        # shards that disagree keep none, and the defaults judge the merged run
        tolerance_policy=(head.tolerance_policy if all(
            s.run.tolerance_policy == head.tolerance_policy for s in shards) else None),
        merged=MergeInfo(shards=len(shards), split_fingerprint=info.split_fingerprint,
                         throughput=THROUGHPUT_RULE, counters=counters_note,
                         hosts=[str(s.report.environment.model_dump().get("hostname") or "")
                                for s in shards]))

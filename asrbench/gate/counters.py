"""Verdicts on a run's work counters against its baseline entry's: exact, no noise band.

Counts of the same code on the same inputs do not vary (asrbench/measure/counters.py), so any
move is real: an increase (an op more per decode step, an fp32 op where bf16 was, a host read per
token, a graph more) is a regression; a decrease means the baseline is out of date, which the
policy fails unless improvements are allowed, as for error rates. Per-call and per-step op counts
are compared always; counts that add up over the decode (all steps' ops, FLOPs, host syncs) only
when both sides decoded the same number of steps and tokens. Where they did not and the run's
transcripts are the baseline's (compared exactly), the decode's length itself is judged (steps
after every row ended: more work for the same output); otherwise the transcripts changed, which
the transcript check reports. Each counted batch (one per distinct batch shape) is
compared with the baseline's batch of the same index, and a change outside the first is named
with its batch. Bytes allocated per encoder call and per prompt/steady decode step are compared
always, the decode's bytes, peak live bytes and retained bytes and the Python-level host reads
(by call site) and the explicit device synchronisation calls (mark_step, synchronize, by call
site) like the totals; a change of graph captures names the module and input shapes
captured anew. Counters of another COUNTER_VERSION, or of other utterances or batch shapes, are
refused, never compared. The device allocator's peak, the read lines and the counting time are
informational.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.model import COUNTER_VERSION, BatchCounters, Counters, Run, Verdict

#: op-count fields compared exactly: (field, metric name, label in the summary)
OP_FIELDS = (
    ("encoder_ops", "counters.encoder_ops", "encoder"),
    ("prompt_step_ops", "counters.prompt_step_ops", "prompt step"),
    ("decode_step_ops", "counters.decode_step_ops", "decode step"),
    ("other_ops", "counters.other_ops", "batch"),
)
TOTAL_FIELD = ("decode_ops_total", "counters.decode_ops_total", "all decode steps")
READS_FIELD = ("host_reads", "counters.host_reads", "host reads")
SYNCS_FIELD = ("device_syncs", "counters.device_syncs", "device syncs")
#: exact byte counts: (field, metric, label); the first ones always, the rest like the totals
BYTE_FIELDS = (
    ("encoder_bytes", "counters.encoder_bytes", "bytes allocated by the encoder"),
    ("prompt_step_bytes", "counters.prompt_step_bytes", "bytes allocated in the prompt step"),
    ("decode_step_bytes", "counters.decode_step_bytes", "bytes allocated per decode step"),
)
DECODE_BYTE_FIELDS = (
    ("decode_bytes_total", "counters.decode_bytes_total", "bytes allocated by all decode steps"),
    ("peak_live_bytes", "counters.peak_live_bytes", "peak live bytes"),
    ("retained_bytes", "counters.retained_bytes", "bytes still alive after the batch"),
)
#: the decode's length, judged when it moved and the transcripts did not: (field, metric, label)
DECODE_LENGTH = (("decode_steps", "counters.decode_steps", "decode steps"),
                 ("tokens", "counters.tokens", "tokens"))
#: every metric a counter verdict can carry (the policy's "counters" check)
COUNTER_METRICS = ("counters", *(metric for _, metric, _ in OP_FIELDS), TOTAL_FIELD[1],
                   *(metric for _, metric, _ in DECODE_LENGTH),
                   "counters.flops_per_utterance", "counters.host_syncs_per_token",
                   "counters.compilations", READS_FIELD[1], "counters.host_reads_per_token",
                   SYNCS_FIELD[1],
                   *(metric for _, metric, _ in BYTE_FIELDS + DECODE_BYTE_FIELDS))
#: changed ops named per field in a note (the largest moves first)
NAMED = 8
#: fields that differ from process to process of the same code (never compared)
#: (a pydantic exclude: the read lines move with any edit above a read, in every batch)
UNSTABLE: dict[str, Any] = {
    "seconds": True, "peak_device_memory_bytes": True, "host_read_lines": True,
    "first_calls": True,  # how the run counted (counters-only, warm-up), not what
    "batches": {"__all__": {"host_read_lines": True}}}
#: notes of the informational "counters" verdicts: nothing was gated, nothing fails
NOT_COUNTED = "this run was not counted (--no-counters): counters not compared"
NO_BASELINE_COUNTERS = ("no counters recorded: refresh the baseline to gate them "
                        "(asrbench baseline update --report <report>)")


def _verdict(config_id: str, metric: str, verdict: str, value: float | None,
             baseline: float | None, note: str) -> Verdict:
    delta = None if value is None or baseline is None else value - baseline
    return Verdict(config_id=config_id, metric=metric, verdict=verdict, value=value,
                   baseline=baseline, delta=delta, allowed=0.0, note=note)


def _direction(increased: bool, decreased: bool) -> str:
    return "regressed" if increased else "improved" if decreased else "unchanged"


def op_changes(baseline: dict[str, int], current: dict[str, int]) -> list[str]:
    """Each op key whose count moved, as text, largest move first: "aten.mm f32 49 -> 61
    (+12)", "aten._to_copy f32 +24 (new)", "aten.mm bf16 -6 (gone)"."""
    moved = [(key, baseline.get(key, 0), current.get(key, 0))
             for key in sorted(baseline.keys() | current.keys())
             if baseline.get(key, 0) != current.get(key, 0)]
    moved.sort(key=lambda m: -abs(m[2] - m[1]))
    texts = []
    for key, before, after in moved:
        if before == 0:
            texts.append(f"{key} +{after} (new)")
        elif after == 0:
            texts.append(f"{key} -{before} (gone)")
        else:
            texts.append(f"{key} {before} -> {after} ({after - before:+d})")
    return texts


def _ops_verdict(config_id: str, metric: str, label: str, baseline: dict[str, int],
                 current: dict[str, int]) -> Verdict:
    changes = op_changes(baseline, current)
    increased = any(current.get(k, 0) > v for k, v in baseline.items()) or any(
        k not in baseline and v for k, v in current.items())
    decreased = any(current.get(k, 0) < v for k, v in baseline.items())
    shown = "; ".join(changes[:NAMED]) + (f"; and {len(changes) - NAMED} more"
                                          if len(changes) > NAMED else "")
    note = f"{label}: {shown}" if changes else f"{label}: same ops"
    after, before = float(sum(current.values())), float(sum(baseline.values()))
    if increased and decreased:
        # A mixed change regressed (an op more) although the total may have fallen: the
        # headline numbers are those of the ops that went up, so they agree with the verdict;
        # the note keeps the totals.
        up = [k for k in baseline.keys() | current.keys()
              if current.get(k, 0) > baseline.get(k, 0)]
        note = (f"{label}: ops that increased {sum(baseline.get(k, 0) for k in up)} -> "
                f"{sum(current.get(k, 0) for k in up)}, all ops {before:.0f} -> {after:.0f}; "
                f"{shown}")
        after = float(sum(current.get(k, 0) for k in up))
        before = float(sum(baseline.get(k, 0) for k in up))
    return _verdict(config_id, metric, _direction(increased, decreased), after, before, note)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _scalar_verdict(config_id: str, metric: str, label: str, baseline: float, current: float,
                    relative: bool = False, delta: bool = False) -> Verdict:
    if current == baseline:
        return _verdict(config_id, metric, "unchanged", current, baseline,
                        f"{label} {_number(current)}")
    if relative and baseline:
        text = f"{label} {(current - baseline) / baseline * 100:+.3g}%"
    else:
        text = f"{label} {_number(baseline)} -> {_number(current)}"
        if delta:
            text += f" ({int(current - baseline):+d})"
    return _verdict(config_id, metric, _direction(current > baseline, current < baseline),
                    current, baseline, text)


def claimed_but_missing(run: Run) -> str | None:
    """Why a run's counters cannot be read although its settings say it was counted (its
    config has counters on, the report has none: edited or truncated), or None. Such a run is
    refused, never taken for a --no-counters run."""
    claimed = run.config.is_set("counters") and run.config.counters
    if claimed and run.counters is None:
        return (f"{run.config.id}: the run's settings say it was counted (counters on) but the "
                "report has no counters (edited or truncated?): its counters cannot be "
                "compared; run it again, or with --no-counters")
    return None


def foreign_version(run: Run) -> str | None:
    """Why a run's counters are of a version this asrbench does not define, or None."""
    if run.counters is not None and run.counters.version != COUNTER_VERSION:
        return (f"{run.config.id}: the report's counters are version {run.counters.version}, "
                f"this asrbench counts version {COUNTER_VERSION}: they cannot be compared or "
                "recorded; run it again with this asrbench")
    return None


def check_countable(run: Run) -> None:
    """Refuse (AsrbenchError, one line) a run whose counters cannot be compared or recorded:
    counting claimed but no counters, or counters of a foreign COUNTER_VERSION."""
    problem = claimed_but_missing(run) or foreign_version(run)
    if problem:
        raise AsrbenchError(problem)


def refusal(current: Counters, baseline: Counters) -> str | None:
    """Why these counters cannot be compared (one line saying to re-record), or None."""
    if baseline.version != current.version:
        return (f"the baseline's counters are version {baseline.version} and this run's "
                f"{current.version} (COUNTER_VERSION {COUNTER_VERSION}): they are not compared; "
                "re-record the baseline (asrbench baseline update --report <report>)")
    if (baseline.utterances and current.utterances and baseline.utterances != current.utterances
            or baseline.rows != current.rows or _shapes(baseline) != _shapes(current)):
        return ("the baseline counted other utterances or another batch shape "
                f"({baseline.rows} rows: {', '.join(baseline.utterances[:3])}...); re-record "
                "the baseline (asrbench baseline update --report <report>)")
    return None


def _shapes(counters: Counters) -> list[tuple[int, int, int, list[str]]]:
    """The counted batches after the first: (index, rows, real rows, utterances)."""
    return [(b.batch, b.rows, b.real_rows, b.utterances) for b in counters.batches]


def batch_label(batch: BatchCounters, batches_in_pass: int | None) -> str:
    """"batch 4/4 (3 of 8 rows real)": how a change outside the first batch is named."""
    of = f"/{batches_in_pass}" if batches_in_pass else ""
    return f"batch {batch.batch + 1}{of} ({batch.real_rows} of {batch.rows} rows real)"


#: a function that says whether the run decoded the given utterances' transcripts exactly as
#: the baseline did (None: unknown, or not comparable exactly on this runner)
SameTranscripts = Callable[[list[str]], bool]


def _batch_verdicts(config_id: str, current: BatchCounters, baseline: BatchCounters,
                    prefix: str = "", same_transcripts: SameTranscripts | None = None
                    ) -> list[Verdict]:
    """The verdicts of one counted batch (`prefix` names a batch other than the first)."""
    verdicts = [_ops_verdict(config_id, metric, prefix + label, getattr(baseline, name),
                             getattr(current, name)) for name, metric, label in OP_FIELDS]
    verdicts += [_scalar_verdict(config_id, metric, prefix + label, getattr(baseline, name),
                                 getattr(current, name), delta=True)
                 for name, metric, label in BYTE_FIELDS]
    same_decode = (current.decode_steps == baseline.decode_steps
                   and current.tokens == baseline.tokens)
    if same_decode:
        for name, metric, label in (TOTAL_FIELD, READS_FIELD, SYNCS_FIELD):
            verdicts.append(_ops_verdict(config_id, metric, prefix + label,
                                         getattr(baseline, name), getattr(current, name)))
        verdicts.append(_scalar_verdict(config_id, "counters.flops_per_utterance",
                                        prefix + "FLOPs/utterance", baseline.flops_per_utterance,
                                        current.flops_per_utterance, relative=True))
        verdicts.append(_scalar_verdict(config_id, "counters.host_syncs_per_token",
                                        prefix + "host syncs/token",
                                        baseline.host_syncs_per_token,
                                        current.host_syncs_per_token))
        verdicts.append(_scalar_verdict(config_id, "counters.host_reads_per_token",
                                        prefix + "host reads/token",
                                        baseline.host_reads_per_token,
                                        current.host_reads_per_token))
        verdicts += [_scalar_verdict(config_id, metric, prefix + label, getattr(baseline, name),
                                     getattr(current, name), delta=True)
                     for name, metric, label in DECODE_BYTE_FIELDS]
    elif same_transcripts is not None and same_transcripts(current.utterances):
        # The same transcripts from more (or fewer) decode steps or tokens: steps after every
        # row ended, tokens that decode to nothing. Other work for the same output: judged.
        verdicts += [_scalar_verdict(config_id, metric, f"{prefix}{label} (same transcripts)",
                                     getattr(baseline, name), getattr(current, name),
                                     delta=True) for name, metric, label in DECODE_LENGTH]
        verdicts.append(_verdict(
            config_id, "counters", "unchanged", None, None,
            f"{prefix}decode totals, FLOPs, host syncs and reads and the decode's bytes not "
            "compared: the decode's length moved (judged above)"))
    else:
        why = ("the transcripts changed: see the transcript check" if same_transcripts
               else "other tokens were decoded: the transcript and reference checks judge "
               "the output")
        verdicts.append(_verdict(
            config_id, "counters", "unchanged", None, None,
            f"{prefix}decode totals, FLOPs, host syncs and reads and the decode's bytes not "
            f"compared: decode steps {baseline.decode_steps} -> {current.decode_steps}, tokens "
            f"{baseline.tokens} -> {current.tokens} ({why})"))
    return verdicts


def counter_verdicts(config_id: str, current: Counters | None, baseline: Counters | None,
                     same_transcripts: SameTranscripts | None = None) -> list[Verdict]:
    """The counter verdicts of one config: [] where neither side counted; one "counters"
    verdict where only one side did, the baseline is refused or nothing moved; else one per
    counter that moved (and a note when the decode totals could not be compared).
    `same_transcripts`: whether the run decoded a batch's utterances as the baseline did;
    where it did, a decode of other length (steps, tokens) is judged, not passed over."""
    if current is None and baseline is None:
        return []
    if current is None:
        return [_verdict(config_id, "counters", "unchanged", None, None, NOT_COUNTED)]
    if baseline is None:
        # Baselines recorded before the counted pass existed: say so, do not fail.
        return [_verdict(config_id, "counters", "new", None, None, NO_BASELINE_COUNTERS)]
    problem = refusal(current, baseline)
    if problem:
        return [_verdict(config_id, "counters", "regressed", None, None, problem)]
    verdicts = _batch_verdicts(config_id, current, baseline, "", same_transcripts)
    for before, after in zip(baseline.batches, current.batches):
        verdicts += _batch_verdicts(config_id, after, before,
                                    batch_label(after, current.batches_in_pass) + ", ",
                                    same_transcripts)
    if current.compilations is not None and baseline.compilations is not None:
        verdict = _scalar_verdict(config_id, "counters.compilations",
                                  "graph compilations/captures", baseline.compilations,
                                  current.compilations)
        anew = op_changes(baseline.captures, current.captures)
        if anew and verdict.verdict == "unchanged":
            # as many captures, of other modules or shapes: a graph compiled anew all the same
            verdict.verdict = "regressed"
            verdict.note = (f"graph captures of other modules or shapes at the same count "
                            f"{_number(current.compilations)}")
        if anew:
            # which module, which input shapes were captured anew (or no longer)
            verdict.note += " (captures: " + "; ".join(anew[:NAMED]) + (
                f"; and {len(anew) - NAMED} more" if len(anew) > NAMED else "") + ")"
        verdicts.append(verdict)
    moved = [v for v in verdicts if v.verdict != "unchanged" or v.metric == "counters"]
    if moved:
        return moved
    # Nothing moved: one line for the summary rather than one per counter.
    step = float(sum(current.decode_step_ops.values()))
    return [_verdict(config_id, "counters", "unchanged", step, step,
                     f"same counts: {counts_summary(current)}")]


def counts_summary(counters: Counters) -> str:
    """The headline counts in one phrase: ops per decode step, FLOPs/utterance, syncs/token."""
    step = float(sum(counters.decode_step_ops.values()))
    return (f"{step:g} ops per decode step, FLOPs/utterance "
            f"{counters.flops_per_utterance:.4g}, host syncs/token "
            f"{counters.host_syncs_per_token:.4g}")


def run_counter_verdicts(run: Run, baseline: Counters | None,
                         predictions: dict[str, str] | None = None) -> list[Verdict]:
    """counter_verdicts for a report run (compare_run's one call); a run whose counters
    cannot be compared (check_countable) is refused, and so is a baseline entry whose
    counters are of another COUNTER_VERSION: "could not judge", as for the report's side
    (compare_run's callers make the refusal a could-not-judge comparison), never a
    regression the code did not make. `predictions`: the baseline's transcripts, where they
    are compared exactly (a decode of other length with the same transcripts is then
    judged)."""
    check_countable(run)
    if run.counters is not None and baseline is not None and \
            baseline.version != run.counters.version:
        raise AsrbenchError(
            f"{run.config.id}: the baseline entry's counters are version {baseline.version}, "
            f"this asrbench counts version {COUNTER_VERSION}: they cannot be compared; "
            "re-record the entry (asrbench baseline update --report <report>)")
    same = None
    if predictions is not None:
        current = {u.id: u.prediction for u in run.utterances}

        def same(ids: list[str]) -> bool:
            ids = ids or list(predictions)  # counters without the ids: the whole run
            return all(i in current and i in predictions and current[i] == predictions[i]
                       for i in ids)
    verdicts = counter_verdicts(run.config.id, run.counters, baseline, same)
    # counters-only with no warm-up: each batch shape's count is the code's first call (said
    # once, on the run's first count that first-call work could move: not a refusal, not the
    # decode's length)
    cold = [v for v in verdicts if v.verdict == "regressed" and v.metric not in NOT_COLD]
    first_calls = (run.counters.first_calls if run.counters is not None
                   and run.counters.first_calls is not None
                   else not run.timings.warmup_batches)  # a report from before the field
    if run.timings.passes == 0 and first_calls and cold:
        cold[0].note += COLD_HINT_GRAPHS if run.config.graphs else COLD_HINT
    return verdicts


#: verdicts work done once on a first call cannot explain (a refusal, the decode's length, the
#: graph captures: a timed run's count holds its warm-up's, and a counters-only run's captures
#: are those or the counted pass's standing in for them)
NOT_COLD = ("counters", "counters.compilations", *(metric for _, metric, _ in DECODE_LENGTH))
#: what a counters-only run without a warm-up adds to a counter that moved
COLD_HINT = (" [counted on the first call (--counters-only, no warm-up): work done once on a "
             "first call counts here and not in a timed run's count; if the code did not "
             "change, run again with --warmup-batches 1]")
#: the same, for a run whose counted batches were counted while capturing their graphs (the
#: emulated Gaudi): --warmup-batches cannot make them warm there
COLD_HINT_GRAPHS = (" [counted on the first call (--counters-only: counted while capturing "
                    "the graphs): work done once on a first call counts here and not in a "
                    "timed run's count; if the code did not change, a timed run (--passes 1) "
                    "counts warm]")


def not_gated(verdicts: list[Verdict]) -> str | None:
    """Why a comparison's counters were not gated (no counter verdict, a run not counted, a
    baseline entry without counters), or None when they were."""
    counted = [v for v in verdicts if v.metric in COUNTER_METRICS]
    if not counted:
        return "no counters on either side (no baseline entry, or neither side was counted)"
    # (a door may have completed the note's suggested command: gate.outcome.carry_options)
    if len(counted) == 1 and counted[0].value is None and counted[0].note.startswith(
            (NOT_COUNTED, NO_BASELINE_COUNTERS.split("(", 1)[0])):
        return counted[0].note
    return None


def describe_changes(verdicts: list[Verdict]) -> str:
    """What changed, in one line: "decode step: aten.mm f32 49 -> 61 (+12); FLOPs/utterance
    +18.2%; host syncs/token 1 -> 2" (empty when nothing moved)."""
    return "; ".join(v.note for v in verdicts
                     if v.metric in COUNTER_METRICS and v.verdict in ("regressed", "improved"))


def check_same_counters(runs: list[Run]) -> None:
    """Runs of one config recorded into one baseline entry must have counted the same work."""
    first = runs[0].counters
    for number, run in enumerate(runs[1:], start=2):
        other = run.counters
        if (first is None) != (other is None) or first is not None and other is not None and (
                first.model_dump(exclude=UNSTABLE) != other.model_dump(exclude=UNSTABLE)):
            changed = describe_changes(counter_verdicts(run.config.id, other, first)) or \
                "one of them was not counted"
            raise AsrbenchError(f"{run.config.id}: report {number}'s counters differ from "
                                f"report 1's ({changed}): record a baseline from runs of the "
                                "same code and settings")

"""Compare a run with its baseline entry: one verdict per metric, and the changed transcripts.

Verdicts: improved, unchanged, regressed, new (no baseline entry), missing (baseline entry
with no run), not-judged (throughput only, below). Error rates are deterministic on one device
class, so any move beyond the absolute tolerance counts. Throughput is noisy (docs/gate.md,
"How throughput bands and contention are decided"):
- not judged at all when the run measured no code speed: an emulated device (its samples/s
  measure the emulator), or a run starved of CPU during its timed passes (it got less than
  STARVED_SHARE of its threads' CPU time, timings.contention);
- an entry recorded from one process has no between-process spread: the verdict says so, and
  the band is at least ONE_PROCESS_REL (gate/baselines.py), or wider by the relative tolerance
  or noise_factor x the RSD recorded with the baseline; a drop beyond it regresses when a
  one-sided Mann-Whitney U test on the per-pass samples of both runs says it is significant
  (p <= ALPHA), or when there are too few passes for the test to ever reach ALPHA (the verdict
  says so);
- an entry recorded from several processes (`asrbench baseline update --report r1 r2 r3`):
  the band is the prediction bound from the spread between those processes
  (_between_processes_verdict), with the relative tolerance as its floor.
"""

from __future__ import annotations

import difflib
import math
import statistics

from asrbench.errors import AsrbenchError
from asrbench.formats.environment import CPU_BF16, CPU_ID
from asrbench.formats.model import (
    BaselineEntry,
    Comparison,
    Contention,
    Run,
    Tolerance,
    TranscriptChange,
    Verdict,
    computes_as_reference,
)
from asrbench.gate.accuracy import accuracy_change, check_edits, check_normalizer
from asrbench.gate.baselines import (
    DEFAULT_TOLERANCE,
    GATED_METRICS,
    ONE_PROCESS_REL,
    RECOMMENDED_PROCESSES,
    check_model,
    tolerance_of,
)
from asrbench.gate.counters import run_counter_verdicts

__all__ = ["Comparison", "TranscriptChange", "Verdict", "compare_run", "missing_entries",
           "run_checks", "changed_transcripts", "word_diff"]
from asrbench.gate.stats import mann_whitney_greater, minimum_p_value

ALPHA = 0.05
#: The default cpu_share_min (gate/baselines.py): a CPU run that got less than this share of
#: its threads' CPU during its timed passes was starved, and its throughput is not judged.
STARVED_SHARE = DEFAULT_TOLERANCE.limit("cpu_share_min")
LOWER_IS_BETTER = {"wer": True, "wer_normalized": True, "cer": True, "samples_per_second": False}


def word_diff(before: str, after: str) -> str:
    """Word-level diff: unchanged words plain, removed as [-w-], added as {+w+}."""
    a, b = before.split(), after.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(a[i1:i2])
            continue
        if i2 > i1:
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def changed_transcripts(baseline: dict[str, str],
                        current: dict[str, str]) -> list[TranscriptChange]:
    """Every utterance whose text differs, appears or disappears, in a stable order."""
    changes = []
    for uid in list(current) + [k for k in baseline if k not in current]:
        old, new = baseline.get(uid), current.get(uid)
        if old != new:
            changes.append(TranscriptChange(id=uid, baseline=old, current=new,
                                            diff=word_diff(old or "", new or "")))
    return changes


def _verdict(config_id: str, metric: str, verdict: str, value: float | None,
             baseline: float | None, delta: float | None, allowed: float | None,
             note: str = "") -> Verdict:
    """A Verdict from its fields in their order (the rules below list them so)."""
    return Verdict(config_id=config_id, metric=metric, verdict=verdict, value=value,
                   baseline=baseline, delta=delta, allowed=allowed, note=note)


def _undefined(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _error_rate_verdict(config_id: str, metric: str, value: float | None, base: float | None,
                        allowed: float) -> Verdict:
    if _undefined(value) or _undefined(base):
        same = _undefined(value) and _undefined(base)
        return _verdict(config_id, metric, "unchanged" if same else "regressed", value, base, None,
                        allowed, "" if same else "one side is undefined (no normalized words)")
    assert value is not None and base is not None  # (neither is undefined)
    delta = value - base
    verdict = ("regressed" if delta > allowed + 1e-12 else
               "improved" if delta < -allowed - 1e-12 else "unchanged")
    return _verdict(config_id, metric, verdict, value, base, delta, allowed)


def _between_processes_verdict(config_id: str, run: Run, entry: BaselineEntry,
                               tolerance: Tolerance) -> Verdict:
    """The band of an entry recorded from k >= 2 processes: the one-sided (1 - ALPHA)
    prediction bound for one new process, t(1 - ALPHA, k - 1) * sqrt(1 + 1/k) times the larger
    of the spread between the recorded processes and this run's own passes; never below the
    relative floor (samples_per_second_rel, e.g. the matrix's per-device-class tolerance). The
    per-pass Mann-Whitney test is not used here: passes inside one process do not see the
    noise between processes, so that test would call a slower process significant."""
    from scipy import stats  # noqa: PLC0415  scipy: slow to import, only when judging

    value, throughput = run.metrics.samples_per_second, run.throughput
    assert value is not None and throughput is not None  # a timed run (see _throughput_verdict)
    base = entry.metrics.samples_per_second
    processes = entry.noise.samples_per_second_per_process
    k = len(processes)
    between = statistics.stdev(processes) / statistics.fmean(processes)
    own = throughput.samples_per_second_rsd
    factor = float(stats.t.ppf(1.0 - ALPHA, k - 1)) * math.sqrt(1.0 + 1.0 / k)
    floor = tolerance.limit("samples_per_second_rel")
    rel_band = max(floor, factor * max(between, own))
    allowed = rel_band * base
    delta = value - base
    note = (f"band {rel_band:.1%}: max of the {floor:.0%} floor and the {1 - ALPHA:.0%} "
            f"prediction bound for one process ({factor:.2f} x {max(between, own):.1%}; spread "
            f"of the {k} recorded processes {between:.1%}, this run's passes {own:.1%})")
    verdict = "regressed" if delta < -allowed else "improved" if delta > allowed else "unchanged"
    return _verdict(config_id, "samples_per_second", verdict, value, base, delta, allowed, note)


def is_emulated(run: Run) -> bool:
    """Whether the run's device is an emulation (`hpu-emulated`: the emulated Gaudi on the CPU),
    whose samples/s measure the emulator and are never a speed claim."""
    device = run.device
    return (device.kind.endswith("emulated") or device.class_.endswith("emulated")
            or device.environment.get("emulated") is True)


def describe_contention(contention: Contention) -> str:
    """What the run got of the machine, in words: its share of its threads' CPU, the load and
    the steal where known."""
    share = contention.cpu_share
    what = "threads'" if contention.threads > 1 else "thread's"
    parts = [f"the run got {share:.0%} of its {contention.threads} {what} CPU"
             if share is not None else "no wall time measured"]
    if contention.wait_seconds is not None:
        parts.append(f"its threads waited {contention.wait_seconds:.1f} s for a CPU")
    if contention.load_average_1m is not None:
        parts.append(f"load {contention.load_average_1m:.1f}"
                     + (f" on {contention.cpus} CPUs" if contention.cpus else ""))
    if contention.steal_share:
        parts.append(f"steal {contention.steal_share:.0%}")
    return ", ".join(parts)


def starved(run: Run, minimum: float = STARVED_SHARE) -> bool:
    """Whether the run was starved of CPU during its timed passes: it computes on the CPU
    (threads_of torch), got less than `minimum` of its threads' CPU time and, where Linux says
    how long its threads waited for a CPU (wait_seconds), waited at least as long as it ran. A
    low share with little waiting is the workload's own idle thread, not a busy machine. An
    accelerator's host thread waits for the device by design: its share is only recorded."""
    contention = run.timings.contention
    if contention is None or contention.threads_of != "torch":
        return False
    share = contention.cpu_share
    if share is None or share >= minimum:
        return False
    return contention.wait_seconds is None or contention.wait_seconds >= contention.cpu_seconds


def throughput_not_judged(run: Run, minimum: float = STARVED_SHARE) -> str | None:
    """Why the run's throughput is not judged (an emulated device, a run starved below
    `minimum`, the cpu_share_min tolerance), or None."""
    if is_emulated(run):
        return ("not judged: emulated device (samples/s measure the emulator, never a speed "
                "claim)")
    contention = run.timings.contention
    if contention is not None and starved(run, minimum):
        return (f"not judged: machine busy ({describe_contention(contention)} "
                f"during the timed passes, below {minimum:.0%}); rerun on a quiet machine "
                "or compare with `asrbench ab`")
    return None


def _throughput_verdict(config_id: str, run: Run, entry: BaselineEntry,
                        tolerance: Tolerance) -> Verdict:
    # called for a timed run only: it has a throughput and samples/s (formats.model.Run checks)
    value, throughput = run.metrics.samples_per_second, run.throughput
    assert value is not None and throughput is not None
    base = entry.metrics.samples_per_second
    reason = throughput_not_judged(run, tolerance.limit("cpu_share_min"))
    if reason is not None:
        return _verdict(config_id, "samples_per_second", "not-judged", value, base,
                        value - base, None, reason)
    if len(entry.noise.samples_per_second_per_process) >= 2:
        return _between_processes_verdict(config_id, run, entry, tolerance)
    # One process: no between-process spread, so the band is at least ONE_PROCESS_REL; the
    # noise measured when the baseline was recorded or the configured floor may widen it. The
    # current run's own spread enters through the significance test on its per-pass samples.
    base_rsd = entry.noise.samples_per_second_rsd
    floor = tolerance.limit("samples_per_second_rel")
    rel_band = max(ONE_PROCESS_REL, floor, tolerance.limit("noise_factor") * base_rsd)
    allowed = rel_band * base
    delta = value - base
    current = throughput.samples_per_second_per_pass
    previous = entry.noise.samples_per_second_per_pass or [base]
    band_note = (f"band {rel_band:.1%} (max of the one-process default {ONE_PROCESS_REL:.0%}, "
                 f"the {floor:.0%} floor and {tolerance.limit('noise_factor'):g}x noise "
                 f"{base_rsd:.1%})")
    one = (f"; band not established from 1 process: record from {RECOMMENDED_PROCESSES} "
           "processes (asrbench baseline update --report r1 r2 r3), or use `asrbench ab`")
    if delta < -allowed:
        if minimum_p_value(len(previous), len(current)) > ALPHA:
            return _verdict(config_id, "samples_per_second", "regressed", value, base, delta,
                            allowed,
                            f"drop beyond {band_note}; too few passes for a significance test"
                            + one)
        p = mann_whitney_greater(previous, current)
        if p <= ALPHA:
            return _verdict(config_id, "samples_per_second", "regressed", value, base, delta,
                            allowed,
                            f"significant drop (Mann-Whitney p={p:.3f}), beyond {band_note}"
                            + one)
        return _verdict(config_id, "samples_per_second", "unchanged", value, base, delta, allowed,
                        f"drop beyond {band_note} but not significant (p={p:.3f})" + one)
    if delta > allowed:
        return _verdict(config_id, "samples_per_second", "improved", value, base, delta, allowed,
                        band_note + one)
    return _verdict(config_id, "samples_per_second", "unchanged", value, base, delta, allowed,
                    f"within {band_note}" + one)


def compilation_verdict(run: Run) -> Verdict | None:
    """Graph compilations during the timed passes: any is a regression (an exact count, no
    noise; a timed pass that compiles measures the compiler). None where nothing was counted."""
    compilations = run.timings.compilations
    if compilations is None:
        return None
    during = int(sum(compilations.passes))
    note = (f"warm-up {compilations.warmup}, timed passes {compilations.passes} "
            f"({compilations.counter})")
    return _verdict(run.config.id, "compilations_in_timed_passes",
                    "regressed" if during else "unchanged", float(during), 0.0, float(during), 0.0,
                    note)


def reference_expected(run: Run) -> bool:
    """Whether `asrbench run` would have checked this run against the fp32 reference: its
    settings ask for reference utterances (stated in the report: older reports did not say) and
    it is not on the CPU in fp32, the reference setup itself (measure.session.reference_agreement;
    a CPU fp32 run with a static decoder is checked too, and is not required to be here)."""
    config = run.config
    return (bool(run.utterances) and "reference_utterances" in config.model_fields_set
            and config.reference_utterances > 0
            and not computes_as_reference(run.device.kind, config.precision))


def agreement_verdict(run: Run, tolerance: Tolerance) -> Verdict | None:
    """Agreement with the stock fp32 CPU reference: regressed when the share of identical
    transcripts falls below reference_share_min or their WER against the reference exceeds
    reference_wer_max; regressed where a run that should carry the check has none. None where
    the run is the reference setup (nothing was checked)."""
    reference = run.reference
    config_id = run.config.id
    if reference is None:
        if not reference_expected(run):
            return None
        return _verdict(config_id, "reference_agreement", "regressed", None, None, None, None,
                        f"the run's settings ask for agreement with the fp32 reference "
                        f"(reference_utterances {run.config.reference_utterances}, "
                        f"{run.config.precision} on {run.device.kind}) but the report has "
                        "none, so agreement is unknown (edited by hand?): regenerate it with "
                        "`asrbench run`")
    if reference.error is not None:
        return _verdict(config_id, "reference_agreement", "regressed", None, None, None, None,
                        f"the reference could not be decoded, so agreement is unknown: "
                        f"{reference.error}")
    # (an agreement without an error has every count: formats.model.ReferenceAgreement checks)
    assert reference.share is not None and reference.wer is not None
    low_share = reference.share < tolerance.limit("reference_share_min")
    high_wer = reference.wer > tolerance.limit("reference_wer_max")
    note = (f"{reference.identical}/{reference.utterances} identical to {reference.reference},"
            f" WER vs reference {reference.wer:.4f} (limits: share >= "
            f"{tolerance.limit('reference_share_min'):g}, "
            f"WER <= {tolerance.limit('reference_wer_max'):g})")
    # no baseline: the run is judged against limits (in the note), not a stored value
    return _verdict(config_id, "reference_agreement",
                    "regressed" if low_share or high_wer else "unchanged", reference.share,
                    None, None, None, note)


def run_checks(run: Run, tolerance: Tolerance) -> list[Verdict]:
    """Verdicts that need no baseline: compilations while timed, agreement with the reference."""
    return [v for v in (compilation_verdict(run), agreement_verdict(run, tolerance)) if v]


#: the note of a counters-only run's throughput verdict (never a pass claim: nothing was timed)
NOT_MEASURED = "throughput: not measured (--counters-only)"
#: devices whose reduced-precision arithmetic is the host CPU's (formats.environment)
CPU_ARITHMETIC = ("cpu", "hpu-emulated")


def not_measured(run: Run, entry: BaselineEntry | None) -> Verdict:
    """The throughput verdict of a counters-only run: not judged, and it says so."""
    base = entry.metrics.samples_per_second if entry is not None else None
    return _verdict(run.config.id, "samples_per_second", "not-judged", None, base, None, None,
                    NOT_MEASURED)


def arithmetic_problem(run: Run, entry: BaselineEntry) -> str | None:
    """Why this run's transcripts are not comparable exactly with the entry's, or None: a
    reduced-precision run whose arithmetic is the host CPU's (cpu, hpu-emulated) rounds as
    the processor's bf16 support and make do (formats.environment: cpu_bf16_arithmetic,
    cpu_identity), so it is gated exactly only against an entry recorded with the same both;
    elsewhere the runner's hardware would decide the verdict."""
    precision = getattr(run.config, "precision", "fp32")
    if precision == "fp32" or run.device.kind not in CPU_ARITHMETIC:
        return None
    # how each side's CPU computes bf16: its instruction-set key and its processor's make
    # (formats.environment: cpu_bf16_arithmetic, cpu_identity)
    mine = (run.device.environment.get(CPU_BF16), run.device.environment.get(CPU_ID))
    theirs = (entry.environment.get(CPU_BF16), entry.environment.get(CPU_ID))
    if None not in mine and mine == theirs:
        return None
    why = (f"{precision} on this CPU computes as {mine[0] or 'unknown'} "
           f"({mine[1] or 'make unknown'}), the baseline's as {theirs[0] or 'unrecorded'} "
           f"({theirs[1] or 'make unrecorded'}): transcripts and error rates are not compared "
           "exactly (the runner's hardware would decide)")
    if None in theirs and None not in mine:  # an entry from before the key was recorded
        why += ("; an entry recorded on this processor (asrbench baseline update --report "
                "<report>) gates them exactly here")
    return why


def _not_comparable(config_id: str, entry: BaselineEntry, run: Run, why: str,
                    changed: int) -> list[Verdict]:
    verdicts = [_verdict(config_id, m, "not-judged", getattr(run.metrics, m),
                         getattr(entry.metrics, m), None, None, why)
                for m in ("wer", "wer_normalized", "cer")]
    verdicts.append(_verdict(config_id, "transcripts", "not-judged", float(changed), 0.0, None,
                             None, f"{changed} transcript(s) differ from the baseline's: {why}"))
    return verdicts


def compare_run(run: Run, entry: BaselineEntry | None,
                policy: Tolerance | None = None) -> Comparison:
    """Verdicts for one report run against its baseline entry (None: no entry yet; `policy`,
    e.g. the matrix section's tolerance, then stands in for the entry's)."""
    config_id = run.config.id
    tolerance = tolerance_of(entry, policy)
    if entry is None:
        verdicts = [_verdict(config_id, m, "new", getattr(run.metrics, m), None, None, None,
                             "no baseline entry") for m in GATED_METRICS
                    if not (run.counters_only and m == "samples_per_second")]
        if run.counters_only:
            verdicts.append(not_measured(run, None))
        return Comparison(config_id=config_id, has_entry=False,
                          verdicts=verdicts + run_checks(run, tolerance))
    check_model(run, entry)  # another model with the same short name is refused, not compared
    check_normalizer(run, entry)  # another normalizer's normalized WER is refused, not compared
    check_edits(run, entry)  # edit counts that are not the transcripts' are refused, not used
    current = {u.id: u.prediction for u in run.utterances}
    transcripts = changed_transcripts(entry.predictions, current)
    why = arithmetic_problem(run, entry)
    if why and run.reference is None:  # nothing else would judge its accuracy: fail closed
        raise AsrbenchError(f"{config_id}: {why}, and the run has no agreement with the fp32 "
                            "reference to judge them by (reference_utterances 0): run it with "
                            "--reference-utterances N, or record its baseline on a processor "
                            "with the same arithmetic")
    if why:  # bf16 on another processor: not failed by the runner's hardware
        why += ("; judged by agreement with the fp32 reference (reference_agreement) and by "
                "the counters")
        verdicts = _not_comparable(config_id, entry, run, why, len(transcripts))
        transcripts = []
    else:
        verdicts = [_error_rate_verdict(config_id, metric, getattr(run.metrics, metric),
                                        getattr(entry.metrics, metric), tolerance.limit("wer_abs"))
                    for metric in ("wer", "wer_normalized")]
        verdicts.append(_error_rate_verdict(
            config_id, "cer", run.metrics.cer, entry.metrics.cer, tolerance.limit("cer_abs")))
    dropped = _dropped_utterances(config_id, entry, run)
    if dropped is not None:
        verdicts.append(dropped)
    verdicts.append(not_measured(run, entry) if run.counters_only
                    else _throughput_verdict(config_id, run, entry, tolerance))
    verdicts += run_checks(run, tolerance)
    # exact work counts (gate/counters.py); the decode's length is judged where the
    # transcripts are compared exactly and did not move
    verdicts += run_counter_verdicts(run, entry.counters, None if why else entry.predictions)
    return Comparison(config_id=config_id, has_entry=True, verdicts=verdicts,
                      transcripts=transcripts,
                      accuracy=accuracy_change(run, entry) if transcripts else None)


def _dropped_utterances(config_id: str, entry: BaselineEntry, run: Run) -> Verdict | None:
    """A failing "utterances" verdict when utterances the baseline scored are not in the run
    (a clip that no longer decodes is skipped: the error rates are then of fewer utterances,
    and may look better), naming them and why they were skipped; None when none is missing."""
    present = {u.id for u in run.utterances}
    gone = [uid for uid in entry.predictions if uid not in present]
    if not gone:
        return None
    reasons = {s.id: s.reason for s in run.dataset.skipped}
    named = "; ".join(f"{uid}: {reasons.get(uid, 'not in this run')}" for uid in gone[:5])
    more = f"; and {len(gone) - 5} more" if len(gone) > 5 else ""
    return _verdict(config_id, "utterances", "regressed", float(len(present)),
                    float(len(entry.predictions)), float(len(present) - len(entry.predictions)),
                    0.0, f"utterances {len(entry.predictions)} -> {len(present)}, scored in the "
                    f"baseline and not here ({named}{more})")


def missing_entries(baseline_entries: dict[str, BaselineEntry], run_ids: set[str]
                    ) -> list[Comparison]:
    """Baseline entries with no run in the report (informational: not a failure)."""
    out = []
    for config_id, entry in baseline_entries.items():
        if config_id in run_ids:
            continue
        out.append(Comparison(config_id=config_id, verdicts=[
            _verdict(config_id, m, "missing", None, getattr(entry.metrics, m), None, None,
                     "baseline entry has no run") for m in GATED_METRICS]))
    return out


#: metrics that are exact counts: printed as integers (render.text), compared with no band
COUNTED_METRICS = ("compilations_in_timed_passes",)
#: metrics whose band is one-sided: only a move in the bad direction beyond it fails
ONE_SIDED = ("samples_per_second",)

"""Verdicts (asrbench/gate/compare.py) on hand-built numbers (no model runs)."""

from __future__ import annotations

import math

import pytest
from factories import make_entry, make_run

from asrbench.formats.model import BaselineEntry, Comparison, Run
from asrbench.gate.compare import compare_run, word_diff


def _run(wer=0.2, cer=0.1, rates=(10.0, 10.0, 10.0), predictions=None) -> Run:
    return make_run(wer=wer, cer=cer, rates=rates, predictions=predictions)


def _entry(run: Run, **tolerance) -> BaselineEntry:
    return make_entry(run, **tolerance)


def test_error_rate_verdicts_at_the_tolerance_edges():
    entry = _entry(_run(wer=0.200))
    assert compare_run(_run(wer=0.205), entry).verdict("wer").verdict == "unchanged"  # == +0.005
    assert compare_run(_run(wer=0.206), entry).verdict("wer").verdict == "regressed"
    assert compare_run(_run(wer=0.190), entry).verdict("wer").verdict == "improved"
    comparison = compare_run(_run(wer=0.250), _entry(_run(wer=0.2), wer_abs=0.1))
    assert comparison.verdict("wer").verdict == "unchanged"


def test_throughput_within_band_is_unchanged():
    entry = _entry(_run(rates=(10.0, 10.1, 9.9)))
    comparison = compare_run(_run(rates=(9.6, 9.7, 9.65)), entry)
    assert comparison.verdict("samples_per_second").verdict == "unchanged"


def test_throughput_drop_beyond_band_and_significant_regresses():
    entry = _entry(_run(rates=(20.0, 20.2, 19.8)))  # claims four times the throughput
    verdict = compare_run(_run(rates=(5.0, 5.1, 4.9)), entry).verdict("samples_per_second")
    assert verdict.verdict == "regressed" and "Mann-Whitney" in verdict.note
    assert verdict.delta == pytest.approx(-15.0)
    # one recorded process: the band is the one-process default 60%, not the 5% floor
    assert verdict.allowed == pytest.approx(0.6 * 20.0)
    assert "band not established from 1 process" in verdict.note


def test_throughput_drop_that_is_not_significant_is_not_a_failure():
    entry = _entry(_run(rates=(10.0, 10.5, 11.0)))
    # median drops 8.6%, inside the band of 3x the baseline's 4.8% RSD (14.3%) -> unchanged
    comparison = compare_run(_run(rates=(9.5, 9.6, 12.0)), entry)
    assert comparison.verdict("samples_per_second").verdict == "unchanged"
    # overlapping samples: a drop beyond the band that the test cannot call significant
    wide = _entry(_run(rates=(10.0, 10.0, 10.0)), samples_per_second_rel=0.01)
    verdict = compare_run(_run(rates=(2.0, 3.0, 10.5)), wide).verdict("samples_per_second")
    assert verdict.verdict == "unchanged" and "not significant" in verdict.note


def test_too_few_passes_for_significance_falls_back_to_the_band():
    entry = _entry(_run(rates=(20.0,)))
    verdict = compare_run(_run(rates=(5.0,)), entry).verdict("samples_per_second")
    assert verdict.verdict == "regressed" and "too few passes" in verdict.note


def test_changed_transcripts_are_listed_with_word_diffs_even_when_wer_is_equal():
    entry = _entry(_run(predictions={"a": "the cat sat", "b": "same"}))
    comparison = compare_run(_run(predictions={"a": "the dog sat", "b": "same"}), entry)
    assert [c.id for c in comparison.transcripts] == ["a"]
    assert comparison.transcripts[0].diff == "the [-cat-] {+dog+} sat"
    assert not comparison.regressed


def test_missing_baseline_entry_is_new():
    comparison = compare_run(_run(), None)
    assert {v.verdict for v in comparison.verdicts} == {"new"}


def test_word_diff_marks_insertions_and_deletions():
    assert word_diff("a b c", "a c d") == "a [-b-] c {+d+}"


def _with(run: Run, compilations=None, reference=None) -> Run:
    return make_run(wer=run.metrics.wer, cer=run.metrics.cer,
                    rates=tuple(run.throughput.samples_per_second_per_pass),
                    predictions={u.id: u.prediction for u in run.utterances},
                    compilations=compilations, reference=reference)


def test_any_compilation_in_a_timed_pass_is_a_regression_with_or_without_a_baseline():
    from asrbench.gate.compare import compilation_verdict

    quiet = _with(_run(), {"counter": "c", "warmup": 3, "passes": [0, 0, 0]})
    noisy = _with(_run(), {"counter": "c", "warmup": 3, "passes": [0, 2, 0]})
    assert compilation_verdict(quiet).verdict == "unchanged"
    verdict = compilation_verdict(noisy)
    assert verdict.verdict == "regressed" and verdict.value == 2.0
    assert compilation_verdict(_with(_run())) is None  # nothing counted (CPU): no verdict
    # the same verdict inside both kinds of comparison
    assert compare_run(noisy, None).regressed
    assert "compilations_in_timed_passes" in {v.metric for v in compare_run(noisy, None).verdicts}
    assert not compare_run(quiet, None).regressed


@pytest.mark.parametrize("identical,wer,verdict", [
    (16, 0.0, "unchanged"),
    (15, 0.012, "unchanged"),  # a bf16 flip
    (7, 0.159, "unchanged"),  # 7/16 = 0.4375 >= 0.25, WER 0.159 <= 0.3
    (3, 0.2, "regressed"),  # 3/16 = 0.1875 < 0.25
    (12, 0.6, "regressed"),  # WER beyond 0.3
])
def test_agreement_with_the_reference_against_the_default_limits(identical, wer, verdict):
    from asrbench.formats.model import Tolerance
    from asrbench.gate.baselines import DEFAULT_TOLERANCE
    from asrbench.gate.compare import agreement_verdict

    reference = {"reference": "stock", "utterances": 16, "identical": identical,
                 "share": identical / 16, "wer": wer, "differing": []}
    run = _with(_run(), reference=reference)
    assert agreement_verdict(run, DEFAULT_TOLERANCE).verdict == verdict
    assert agreement_verdict(_with(_run()), DEFAULT_TOLERANCE) is None  # the reference setup
    # a section may widen the WER limit (the emulated Gaudi's synthetic Hindi under bf16)
    wide = DEFAULT_TOLERANCE.over(Tolerance(reference_wer_max=0.7, reference_share_min=0.0))
    assert agreement_verdict(run, wide).verdict == "unchanged"


def test_a_reference_that_could_not_be_decoded_fails_the_agreement_check():
    from asrbench.gate.baselines import DEFAULT_TOLERANCE
    from asrbench.gate.compare import agreement_verdict

    run = _with(_run(), reference={"reference": "stock", "requested": 16,
                                   "error": "reference decoding failed: no network"})
    verdict = agreement_verdict(run, DEFAULT_TOLERANCE)
    assert verdict.verdict == "regressed" and "no network" in verdict.note
    assert verdict.baseline is None and verdict.value is None


def test_a_reference_share_that_is_not_its_counts_is_refused_on_loading():
    """share 1.0 beside 0 of 3 identical passed the agreement check: the share is checked
    against identical / utterances when a report is read."""
    from pydantic import ValidationError

    honest = {"reference": "stock", "utterances": 3, "identical": 0, "share": 0.0, "wer": 0.5,
              "differing": []}
    assert _with(_run(), reference=honest).reference.share == 0.0
    with pytest.raises(ValidationError, match=r"share 1 is not identical / utterances \(0/3\)"):
        _with(_run(), reference={**honest, "share": 1.0})


def test_a_run_that_should_carry_the_agreement_check_and_has_none_fails_it():
    """A bf16 run (not the reference setup) whose settings ask for reference utterances has an
    agreement check or the reason it could not be made: a report without either (the
    `reference` removed by hand) passed with no agreement verdict at all. The reference setup
    itself (CPU fp32) and a run with reference_utterances 0 need none."""
    from asrbench.gate.baselines import DEFAULT_TOLERANCE
    from asrbench.gate.compare import agreement_verdict

    document = _run().model_dump(mode="json", by_alias=True)
    document["config"] = {**document["config"], "precision": "bf16", "reference_utterances": 16}
    bf16 = Run.model_validate(document)
    assert bf16.reference is None
    verdict = agreement_verdict(bf16, DEFAULT_TOLERANCE)
    assert verdict.verdict == "regressed" and verdict.value is None
    assert "ask for agreement with the fp32 reference (reference_utterances 16, bf16 on cpu) " \
        "but the report has none" in verdict.note
    for settings in ({"precision": "fp32", "reference_utterances": 16},
                     {"precision": "bf16", "reference_utterances": 0}):
        document["config"] = {**document["config"], **settings}
        assert agreement_verdict(Run.model_validate(document), DEFAULT_TOLERANCE) is None


def test_the_agreement_row_shows_no_limit_as_its_baseline():
    """The agreement check has no stored baseline: its limits are in the note, and the
    baseline column (terminal, Markdown) shows none rather than the share limit."""
    from asrbench.gate.baselines import DEFAULT_TOLERANCE
    from asrbench.gate.compare import agreement_verdict
    from asrbench.gate.policy import Policy
    from asrbench.render.text import describe_verdict, markdown_summary

    reference = {"reference": "stock", "utterances": 16, "identical": 3, "share": 3 / 16,
                 "wer": 0.2, "differing": []}
    verdict = agreement_verdict(_with(_run(), reference=reference), DEFAULT_TOLERANCE)
    assert verdict.baseline is None and verdict.value == 3 / 16
    assert describe_verdict(verdict).startswith("reference_agreement: baseline - -> 0.1875 ")
    assert "share >= 0.25" in verdict.note
    row = next(line for line in markdown_summary(
        [Comparison(config_id="c", verdicts=[verdict])], Policy()).splitlines()
        if line.startswith("| reference_agreement |"))
    assert row.startswith("| reference_agreement | - | 0.1875 |"), row




def _processes_entry(per_process, rsd=0.01, **tolerance):
    entry = _entry(_run(), **tolerance)
    entry.metrics.samples_per_second = sorted(per_process)[len(per_process) // 2]
    entry.noise.samples_per_second_per_process = list(per_process)
    entry.noise.samples_per_second_rsd = rsd
    return entry


def test_between_process_band_is_the_prediction_bound_of_the_recorded_spread():
    from scipy import stats

    processes = [10.0, 10.4, 9.6, 10.2, 9.8]  # spread 3.16% of the mean
    entry = _processes_entry(processes)
    spread = 0.0316227766
    factor = stats.t.ppf(0.95, 4) * math.sqrt(1 + 1 / 5)  # 2.33
    band = factor * spread  # 7.4%: wider than the 5% floor
    inside = compare_run(_run(rates=(9.35, 9.35, 9.35)), entry).verdict("samples_per_second")
    assert inside.verdict == "unchanged" and inside.allowed == pytest.approx(band * 10.0, rel=1e-6)
    assert "prediction bound" in inside.note and "5 recorded processes" in inside.note
    # beyond the band: regressed with no per-pass significance test (passes cannot see it)
    beyond = compare_run(_run(rates=(9.2, 9.2, 9.2)), entry).verdict("samples_per_second")
    assert beyond.verdict == "regressed" and "Mann-Whitney" not in beyond.note
    faster = compare_run(_run(rates=(10.9, 10.9, 10.9)), entry).verdict("samples_per_second")
    assert faster.verdict == "improved"


def test_between_process_band_never_goes_below_the_floor_and_widens_with_the_runs_own_noise():
    tight = _processes_entry([10.0, 10.0, 10.0001], samples_per_second_rel=0.4)
    verdict = compare_run(_run(rates=(7.0, 7.0, 7.0)), tight).verdict("samples_per_second")
    assert verdict.verdict == "unchanged" and verdict.allowed == pytest.approx(4.0)  # 40% floor
    quiet = _processes_entry([10.0, 10.0, 10.0001])
    # this run's own passes spread 10%: the band follows them, not the quiet baseline
    noisy = compare_run(_run(rates=(8.0, 9.0, 10.0)), quiet).verdict("samples_per_second")
    assert noisy.verdict == "unchanged" and noisy.allowed > 0.3 * 10.0


def test_an_utterance_the_baseline_scored_and_the_run_dropped_fails_naming_why():
    """A clip that no longer decodes is skipped, so the error rates are of fewer utterances
    (here every rate stays the same): the change showed only as a deleted transcript, and
    passed with --transcripts warn. Now the WER check fails, naming the clip and its reason."""
    from asrbench.gate.policy import Policy

    both = {"a": "hello world", "b": "good morning"}
    entry = make_entry(make_run(predictions=both))
    run = make_run(predictions={"a": "hello world"},
                   dataset={"name": "x", "skipped": [{"id": "b", "reason": "truncated: ..."}],
                            "skipped_count": 1})
    comparison = compare_run(run, entry)
    (dropped,) = [v for v in comparison.verdicts if v.metric == "utterances"]
    assert dropped.verdict == "regressed" and (dropped.baseline, dropped.value) == (2.0, 1.0)
    assert dropped.note == ("utterances 2 -> 1, scored in the baseline and not here "
                            "(b: truncated: ...)")
    failing = [f.check for f in Policy(transcripts="warn").findings(comparison) if f.fails]
    assert failing == ["wer"]
    same = compare_run(make_run(predictions=both), entry)
    assert not [v for v in same.verdicts if v.metric == "utterances"]  # the control

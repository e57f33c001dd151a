"""The paired bootstrap of error-rate changes, the normalizer refusal, and the policy option,
on synthetic edit counts whose answers are known by construction."""

from __future__ import annotations

import pytest
from factories import make_entry_document, make_run_document, with_own_error_rates

from asrbench.errors import AsrbenchError
from asrbench.formats.model import (
    AccuracyChange,
    BaselineEntry,
    Comparison,
    ErrorRateChange,
    Run,
    Verdict,
)
from asrbench.gate.accuracy import accuracy_change, paired_bootstrap
from asrbench.gate.compare import compare_run
from asrbench.gate.policy import Policy
from asrbench.render.text import finding_text

WORDS = 10  # reference words of every synthetic utterance


def _rows(errors: list[int]) -> list[list[int]]:
    return [[e, WORDS] for e in errors]


def test_a_real_shift_is_found():
    # 40 utterances of 10 words; 30 of them gain one error: WER 40/400 -> 70/400, +0.075.
    base = [1] * 40
    run = [2] * 30 + [1] * 10
    [(delta, low, high)] = paired_bootstrap(_rows(base), _rows(run))
    assert delta == pytest.approx(30 / 400)
    # No utterance got better, so no resample can show an improvement: the interval is above 0.
    assert 0 < low <= delta <= high


def test_the_same_errors_reshuffled_across_utterances_are_not_a_shift():
    base = [0, 1, 2, 3, 4] * 4
    run = [4, 0, 1, 2, 3] * 4  # each block rotated by one: same errors, other utterances
    [(delta, low, high)] = paired_bootstrap(_rows(base), _rows(run))
    assert delta == 0.0
    assert low < 0 < high


def test_the_interval_is_reproducible_with_its_fixed_seed_and_paired():
    base, run = _rows([0, 1, 2, 3, 4] * 4), _rows([1, 1, 2, 4, 4] * 4)
    assert paired_bootstrap(base, run) == paired_bootstrap(base, run)
    # Identical sides: every resample differs by exactly 0 (the same utterances on both sides).
    assert paired_bootstrap(base, base) == [(0.0, 0.0, 0.0)]


def _with_edits(run: dict, edits: dict[str, list[int]], normalizer: str | None = None) -> dict:
    run["utterances"] = [{"id": k, "prediction": f"text {k} {v[0]}", "edits": v}
                         for k, v in edits.items()]
    if normalizer:
        run["metrics"]["normalizer"] = normalizer
    return with_own_error_rates(run)


def _pair(base_edits, run_edits, normalizer="asrbench-basic-marks/1"):
    base = _with_edits(make_run_document(), base_edits, normalizer)
    entry = make_entry_document(base)
    entry["normalizer"] = normalizer
    entry["edits"] = base_edits
    run = _with_edits(make_run_document(), run_edits, normalizer)
    return Run.model_validate(run), BaselineEntry.model_validate(entry)


def test_better_worse_and_unchanged_utterances_are_counted_per_rate():
    # [word errors, words, char errors, chars, normalized word errors, normalized words]
    base = {"u1": [1, 5, 2, 20, 1, 5], "u2": [0, 5, 0, 20, 0, 5], "u3": [2, 5, 3, 20, 2, 5]}
    now = {"u1": [0, 5, 2, 20, 0, 5], "u2": [1, 5, 1, 20, 0, 5], "u3": [3, 5, 1, 20, 2, 5]}
    run, entry = _pair(base, now)
    change = accuracy_change(run, entry)
    assert change.utterances == 3
    wer, cer, norm = change.change("wer"), change.change("cer"), change.change("wer_normalized")
    # words: u1 better (1 -> 0), u2 worse (0 -> 1), u3 worse (2 -> 3); 3 -> 4 errors of 15.
    assert (wer.better, wer.worse, wer.unchanged) == (1, 2, 0)
    assert wer.delta == pytest.approx(1 / 15)
    # characters: u1 same, u2 worse, u3 better; 5 -> 4 errors of 60.
    assert (cer.better, cer.worse, cer.unchanged) == (1, 1, 1)
    assert cer.delta == pytest.approx(-1 / 60)
    # normalized words: u1 better, u2 and u3 the same.
    assert (norm.better, norm.worse, norm.unchanged) == (1, 0, 2)


def test_the_comparison_carries_the_interval_when_transcripts_changed():
    base = {f"u{i}": [1, 10, 2, 40, 1, 10] for i in range(30)}
    now = {k: ([3, 10, 6, 40, 3, 10] if i < 20 else v) for i, (k, v) in enumerate(base.items())}
    run, entry = _pair(base, now)
    comparison = compare_run(run, entry)
    assert len(comparison.transcripts) == 20
    wer = comparison.accuracy.change("wer")
    assert wer.delta == pytest.approx(40 / 300) and wer.low > 0
    assert (wer.worse, wer.better) == (20, 0)
    same_run, same_entry = _pair(base, base)
    assert compare_run(same_run, same_entry).accuracy is None  # nothing changed: no interval


def test_an_entry_made_with_another_normalizer_is_refused_with_the_refresh_command():
    edits = {"u1": [1, 5, 2, 20, 1, 5]}
    run, entry = _pair(edits, edits)
    old = entry.model_copy(update={"normalizer": None})  # recorded before names were kept
    with pytest.raises(AsrbenchError) as caught:
        compare_run(run, old)
    message = str(caught.value)
    assert "\n" not in message and "asrbench baseline update --report" in message
    other = entry.model_copy(update={"normalizer": "asrbench-basic-marks/0"})
    with pytest.raises(AsrbenchError, match="asrbench-basic-marks/0"):
        compare_run(run, other)


def test_english_entries_recorded_before_names_were_kept_still_compare():
    edits = {"u1": [1, 5, 2, 20, 1, 5]}
    run, entry = _pair(edits, edits, normalizer="whisper-english/1")
    old = entry.model_copy(update={"normalizer": None})
    assert compare_run(run, old).verdict("wer").verdict == "unchanged"


def _regressed(low: float, high: float) -> Comparison:
    verdict = Verdict(config_id="cfg", metric="wer", verdict="regressed", value=0.3,
                      baseline=0.2, delta=0.1, allowed=0.005)
    interval = ErrorRateChange(metric="wer", delta=0.1, low=low, high=high, better=1, worse=3,
                               unchanged=0)
    return Comparison(config_id="cfg", verdicts=[verdict],
                      accuracy=AccuracyChange(utterances=4, confidence=0.95, resamples=100,
                                              seed=1, changes=[interval]))


def test_wer_significance_fails_only_a_significant_regression():
    noisy, real = _regressed(-0.05, 0.25), _regressed(0.02, 0.18)
    assert Policy().fails([noisy]) and Policy().fails([real])  # default: the tolerance decides
    significance = Policy(wer_significance=True)
    assert not significance.fails([noisy]) and significance.fails([real])
    [finding] = significance.findings(noisy, ["wer"])
    assert not finding.fails and "not significant" in finding_text(finding)


def test_the_summary_states_the_interval_and_the_utterances():
    from asrbench.render.text import accuracy_lines

    comparison = _regressed(0.004, 0.038)
    comparison.accuracy.changes[0] = ErrorRateChange(metric="wer", delta=0.021, low=0.004,
                                                     high=0.038, better=1, worse=5, unchanged=4)
    line = accuracy_lines(comparison)[0]
    assert line.startswith("WER +0.021 (95% CI +0.004 .. +0.038), 5 utterances worse, 1 better")


def test_the_pytest_gate_prints_the_interval_and_the_counts_with_the_diffs():
    """What test_wer/test_cer/test_transcripts print when transcripts changed: the WER change
    with its interval and utterances worse/better, then the word diffs (limit: how many)."""
    from asrbench.plugin import change_listing

    # three changed utterances and nine unchanged ones: 12 >= MIN_UNITS, so an interval
    same = {f"s{i}": [1, 5, 2, 20, 1, 5] for i in range(9)}
    base = {"u1": [1, 5, 2, 20, 1, 5], "u2": [0, 5, 0, 20, 0, 5], "u3": [2, 5, 3, 20, 2, 5], **same}
    now = {"u1": [0, 5, 2, 20, 0, 5], "u2": [1, 5, 1, 20, 0, 5], "u3": [3, 5, 1, 20, 2, 5], **same}
    run, entry = _pair(base, now)
    comparison = compare_run(run, entry)
    assert len(comparison.transcripts) == 3
    listing = change_listing(comparison).splitlines()
    # 12 -> 13 word errors of 60 words
    assert listing[0].startswith("  WER +0.017 (95% CI ")
    assert "2 utterances worse, 1 better" in listing[0]
    assert [line.split(":")[0].strip() for line in listing[-3:]] == ["u1", "u2", "u3"]
    assert not any(line.strip().startswith("u1:")
                   for line in change_listing(comparison, 0).splitlines())
    unchanged, same_entry = _pair(base, base)
    assert change_listing(compare_run(unchanged, same_entry)) == ""


def test_a_baseline_edits_row_of_the_wrong_length_is_refused_at_load():
    """A hand-edited or truncated row would crash the interval; loading names the field."""
    from asrbench.formats.model import parse_baselines

    run = make_run_document()
    entry = make_entry_document(run)
    entry["edits"] = {"u1": [1, 5, 2, 20]}
    document = {"schema": 1, "device_class": "cpu", "entries": {"cfg": entry}}
    with pytest.raises(AsrbenchError, match=r"entries\['cfg'\]\.edits\['u1'\]"):
        parse_baselines(document, "b.json")


def test_one_changed_utterance_gives_no_interval_and_no_significance_claim():
    # issue 28: on 64ba4a1 one utterance (8 words, one new error) gave
    # "WER +0.125 (95% CI +0.125 .. +0.125)" and was significant
    from asrbench.gate.accuracy import MIN_UNITS
    from asrbench.render.text import accuracy_lines, describe_change

    run, entry = _pair({"u1": [0, 8, 0, 30, 0, 8]}, {"u1": [1, 8, 2, 30, 1, 8]})
    comparison = compare_run(run, entry)
    wer = comparison.accuracy.change("wer")
    assert wer.delta == pytest.approx(1 / 8)
    assert (wer.low, wer.high) == (None, None) and not wer.significant
    assert (comparison.accuracy.units, comparison.accuracy.min_units) == (1, MIN_UNITS)
    assert describe_change(wer) == "WER +0.125 (no interval), 1 utterance worse, 0 better"
    line = accuracy_lines(comparison)[0]
    assert "CI" not in line and f"no interval from 1 utterance: fewer than {MIN_UNITS}" in line
    # the change is of the utterances scored on both sides (the error-rate verdicts are of
    # each side's own): said, so a "+0.000" beside a regressed verdict explains itself
    assert "no paired bootstrap; over the 1 utterance scored on both sides" in line
    # --wer-significance: no interval, so the tolerance decides and nothing claims significance
    regressed = comparison.model_copy(update={"verdicts": [Verdict(
        config_id="cfg", metric="wer", verdict="regressed", value=0.125, baseline=0.0,
        delta=0.125, allowed=0.005)]})
    [finding] = Policy(wer_significance=True).findings(regressed, ["wer"])
    assert finding.fails and "significant" not in finding_text(finding)


def test_edit_counts_that_disagree_with_the_transcripts_are_refused_in_one_line():
    # "the cat sat" -> "the cat sit": 1 of 3 words, 1 of 11 characters (counted by hand);
    # normalized the same: 1 of 3
    from asrbench.gate.baselines import entry_from_runs

    def run_with(edits: list[int]) -> Run:
        document = make_run_document()
        document["utterances"] = [{"id": "u1", "reference": "the cat sat",
                                   "prediction": "the cat sit", "edits": edits}]
        return Run.model_validate(with_own_error_rates(document))

    honest = run_with([1, 3, 1, 11, 1, 3])
    entry = BaselineEntry.model_validate({**make_entry_document(make_run_document()),
                                          "edits": {"u1": [0, 3, 0, 11, 0, 3]}})
    assert compare_run(honest, entry).verdicts  # judged
    for forged in ([10 ** 15, 3, 1, 11, 1, 3], [1, 3, 1, 11, 10 ** 15, 3], [0, 3, 0, 11, 0, 3],
                   [1, 3000, 1, 11, 1, 3]):
        with pytest.raises(AsrbenchError) as caught:
            compare_run(run_with(forged), entry)
        message = str(caught.value)
        assert "\n" not in message and "utterance u1" in message
        assert "disagree with its transcripts" in message
        with pytest.raises(AsrbenchError, match="disagree with its transcripts"):
            entry_from_runs([run_with(forged)], {})
    # a baseline entry's counts impossible for its predictions: 10^15 errors of a 3-word one
    predictions = {"u1": "the cat sat"}
    from asrbench.formats.model import predictions_digest

    forged_entry = BaselineEntry.model_validate({
        **make_entry_document(make_run_document()), "predictions": predictions,
        "predictions_sha256": predictions_digest(predictions),
        "edits": {"u1": [10 ** 15, 3, 0, 11, 0, 3]}})
    with pytest.raises(AsrbenchError, match="impossible for its predictions"):
        compare_run(honest, forged_entry)


def test_error_rates_that_are_not_the_utterances_are_refused_in_one_line():
    """Every utterance's counts are its transcripts' but the run's WER (or CER, or normalized
    WER) was left at an older value: the gate judged the stated 0.1923 against the baseline and
    said `result: ok`, with the utterances' own counts at WER 1.0. Now the run is refused,
    by compare and by a baseline refresh; an honest run's rates pass."""
    from asrbench.gate.baselines import entry_from_runs

    document = make_run_document()
    document["utterances"] = [
        {"id": "u1", "reference": "the cat sat", "prediction": "dog",
         "edits": [3, 3, 11, 11, 3, 3]},
        {"id": "u2", "reference": "a b", "prediction": "a b", "edits": [0, 2, 0, 3, 0, 2]}]
    honest = Run.model_validate(with_own_error_rates(document))
    assert honest.metrics.wer == pytest.approx(3 / 5)
    entry = BaselineEntry.model_validate(make_entry_document(make_run_document()))
    assert compare_run(honest, entry).verdicts  # judged
    for metric, stale in (("wer", 0.1923), ("cer", 0.5), ("wer_normalized", 0.0)):
        lying = Run.model_validate({**document, "metrics": {**document["metrics"],
                                                            metric: stale}})
        with pytest.raises(AsrbenchError) as caught:
            compare_run(lying, entry)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"cfg: {metric} {stale:.6g}, where")
        assert "error rates disagree with its utterances" in message
        with pytest.raises(AsrbenchError, match="error rates disagree with its utterances"):
            entry_from_runs([lying], {})


def _speakers_pair(with_speakers: bool):
    """12 speakers of 5 utterances (10 words each); every utterance of one speaker got 4 more
    errors, nothing else moved: a change that one speaker carries."""
    base, now, speakers = {}, {}, {}
    for speaker in range(12):
        for n in range(5):
            uid = f"s{speaker}u{n}"
            base[uid] = [1, 10, 1, 40, 1, 10]
            now[uid] = [5, 10, 5, 40, 5, 10] if speaker == 0 else base[uid]
            speakers[uid] = f"{speaker:016x}"
    run, entry = _pair(base, now)
    if with_speakers:
        run = run.model_copy(update={"utterances": [
            u.model_copy(update={"speaker": speakers[u.id]}) for u in run.utterances]})
    return run, entry, base, now, speakers


def test_the_bootstrap_resamples_speakers_where_the_data_names_them():
    blocked_run, entry, base, now, speakers = _speakers_pair(True)
    blocked = compare_run(blocked_run, entry).accuracy
    assert (blocked.method, blocked.units, blocked.utterances) == ("speakers", 12, 60)
    # the same as an utterance bootstrap over each speaker's summed counts (built here)
    order = sorted({s for s in speakers.values()})
    sums = {side: [[sum(edits[u][c] for u in edits if speakers[u] == s) for c in (0, 1)]
                   for s in order] for side, edits in (("base", base), ("now", now))}
    [(delta, low, high)] = paired_bootstrap(sums["base"], sums["now"])
    wer = blocked.change("wer")
    assert (wer.delta, wer.low, wer.high) == pytest.approx((delta, low, high))
    assert wer.delta == pytest.approx(20 / 600)
    # one speaker in twelve is missing from about a third of the resamples: not significant
    assert wer.low <= 0 < wer.high and not wer.significant
    # the same utterances without speakers: resampled as independent, the five correlated
    # utterances look like five pieces of evidence, and the change looks significant
    plain_run, entry, *_ = _speakers_pair(False)
    plain = compare_run(plain_run, entry).accuracy
    assert (plain.method, plain.units) == ("utterances", 60)
    assert "names no speakers" in plain.note and plain.change("wer").significant


def test_too_few_speakers_give_no_interval_however_many_utterances():
    base = {f"s{s}u{n}": [1, 10, 1, 40, 1, 10] for s in range(3) for n in range(10)}
    now = {k: ([3, 10, 3, 40, 3, 10] if k.startswith("s0") else v) for k, v in base.items()}
    run, entry = _pair(base, now)
    run = run.model_copy(update={"utterances": [
        u.model_copy(update={"speaker": u.id[:2]}) for u in run.utterances]})
    accuracy = compare_run(run, entry).accuracy
    assert (accuracy.method, accuracy.units, accuracy.utterances) == ("speakers", 3, 30)
    assert accuracy.change("wer").low is None
    assert "no interval from 3 speakers: fewer than 10" in accuracy.note

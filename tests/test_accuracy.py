"""The paired bootstrap of error-rate changes, the normalizer refusal, and the policy option,
on synthetic edit counts whose answers are known by construction."""

from __future__ import annotations

import pytest
from helpers import make_entry, make_run

from asrbench.errors import AsrbenchError
from asrbench.formats.model import AccuracyChange, BaselineEntry, Comparison, ErrorRateChange, Run, Verdict
from asrbench.gate.accuracy import accuracy_change, paired_bootstrap
from asrbench.gate.compare import compare_run
from asrbench.gate.policy import Policy

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
    return run


def _pair(base_edits, run_edits, normalizer="asrbench-basic-marks/1"):
    base = _with_edits(make_run(), base_edits, normalizer)
    entry = make_entry(base)
    entry["normalizer"] = normalizer
    entry["edits"] = base_edits
    run = _with_edits(make_run(), run_edits, normalizer)
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
    assert not finding.fails and "not significant" in finding.message


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

    base = {"u1": [1, 5, 2, 20, 1, 5], "u2": [0, 5, 0, 20, 0, 5], "u3": [2, 5, 3, 20, 2, 5]}
    now = {"u1": [0, 5, 2, 20, 0, 5], "u2": [1, 5, 1, 20, 0, 5], "u3": [3, 5, 1, 20, 2, 5]}
    run, entry = _pair(base, now)
    comparison = compare_run(run, entry)
    assert len(comparison.transcripts) == 3
    listing = change_listing(comparison).splitlines()
    assert listing[0].startswith("  WER +0.067 (95% CI ") and "2 utterances worse, 1 better" in listing[0]
    assert [line.split(":")[0].strip() for line in listing[-3:]] == ["u1", "u2", "u3"]
    assert not any(line.strip().startswith("u1:") for line in change_listing(comparison, 0).splitlines())
    unchanged, same_entry = _pair(base, base)
    assert change_listing(compare_run(unchanged, same_entry)) == ""


def test_a_baseline_edits_row_of_the_wrong_length_is_refused_at_load():
    """A hand-edited or truncated row would crash the interval; loading names the field."""
    from asrbench.formats.model import parse_baselines

    run = make_run()
    entry = make_entry(run)
    entry["edits"] = {"u1": [1, 5, 2, 20]}
    document = {"schema": 1, "device_class": "cpu", "entries": {"cfg": entry}}
    with pytest.raises(AsrbenchError, match=r"entries\['cfg'\]\.edits\['u1'\]"):
        parse_baselines(document, "b.json")

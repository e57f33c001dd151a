"""Error rates and throughput statistics against hand-worked examples."""

import math

import pytest

from asrbench.measure.metrics import error_rates, normalizer_for, percentile, throughput


def test_wer_hand_worked_single_utterance():
    # "sat"->"sit" is 1 substitution, "the" before "mat" is 1 deletion: 2 errors / 6 words.
    rates = error_rates(["the cat sat on the mat"], ["the cat sit on mat"], "english")
    assert rates.wer == pytest.approx(2 / 6)


def test_wer_is_corpus_level_not_mean_of_utterances():
    # utt 1: 1 substitution over 2 words; utt 2: 0 errors over 4 words -> 1/6 (mean would be 1/4).
    rates = error_rates(["a b", "c d e f"], ["a x", "c d e f"], None)
    assert rates.wer == pytest.approx(1 / 6)


def test_insertions_can_push_wer_above_one():
    # 1 reference word, hypothesis adds 2 words: 2 insertions / 1 word.
    assert error_rates(["hello"], ["hello big world"], None).wer == pytest.approx(2.0)


def test_raw_wer_counts_case_and_punctuation_normalized_does_not():
    rates = error_rates(["Hello, World!"], ["hello world"], "english")
    assert rates.wer == pytest.approx(1.0)  # "Hello,"!="hello", "World!"!="world"
    assert rates.wer_normalized == pytest.approx(0.0)


def test_cer_hand_worked():
    # "abcd" vs "abxd": 1 substitution over 4 characters.
    assert error_rates(["abcd"], ["abxd"], None).cer == pytest.approx(0.25)


def test_english_normalizer_standardizes_spelled_forms():
    normalize = normalizer_for("en")
    assert normalize("Mr. Smith isn't here!") == normalize("mister smith is not here")


def test_basic_normalizer_for_hindi_strips_punctuation_keeps_letters():
    normalize = normalizer_for("hindi")
    assert normalize("नमस्ते, दुनिया।") == normalize("नमस्ते दुनिया")
    # Hindi danda and comma removed: WER 0 after normalization, 2 errors of 2 words raw.
    rates = error_rates(["नमस्ते, दुनिया।"], ["नमस्ते दुनिया"], "hi")
    assert rates.wer_normalized == 0.0
    assert rates.wer == pytest.approx(1.0)


def test_references_empty_after_normalization_are_excluded_and_counted():
    rates = error_rates(["[noise]", "good day"], ["anything", "good day"], "english")
    assert rates.normalized_excluded == 1
    assert rates.wer_normalized == 0.0


def test_percentile_matches_linear_interpolation():
    assert percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert math.isnan(percentile([], 50))


def test_throughput_median_and_relative_spread():
    # 10 samples in 2, 2.5 and 5 s: 5, 4 and 2 samples/s.
    stats = throughput(10, [2.0, 2.5, 5.0])
    assert stats.per_pass == (5.0, 4.0, 2.0)
    assert stats.median == 4.0 and stats.minimum == 2.0 and stats.maximum == 5.0
    # sample stdev of (5, 4, 2) = sqrt(7/3); mean 11/3.
    assert stats.rsd == pytest.approx(math.sqrt(7 / 3) / (11 / 3))
    assert throughput(10, [2.0]).rsd == 0.0
    with pytest.raises(ValueError):
        throughput(10, [])

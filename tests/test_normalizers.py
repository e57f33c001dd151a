"""Golden tests of the text normalizers on Devanagari: expected outputs written by hand.

Code points are spelled out where the look of a string hides them (nukta, joiners)."""

import pytest

from asrbench.measure.metrics import (
    BASIC_NORMALIZER,
    ENGLISH_NORMALIZER,
    basic_normalize,
    error_rates,
    normalizer_for,
    normalizer_name,
    whisper_normalizer_for,
)

WHISPER = whisper_normalizer_for("hi")


def test_vowel_signs_stay_in_the_word():
    # कि = क + ि (U+093F, Mc), ता = त + ा (U+093E, Mc): one word of five code points.
    assert basic_normalize("किताब") == "किताब"
    # Whisper's basic normalizer turns each vowel sign into a space.
    assert WHISPER("किताब").split() == ["क", "त", "ब"]


def test_virama_conjuncts_stay_whole():
    text = "प्राचीन संस्कृतियों"
    assert basic_normalize(text) == "प्राचीन संस्कृतियों"
    # The example: virama (U+094D), anusvara, matras all become spaces in Whisper's.
    assert WHISPER(text).split() == ["प", "र", "च", "न", "स", "स", "क", "त", "य"]


def test_nukta_precomposed_and_combining_forms_normalize_alike():
    precomposed = "\u095b\u0930\u0942\u0930"  # ज़रूर with ज़ as one code point (U+095B)
    combining = "\u091c\u093c\u0930\u0942\u0930"  # ज + nukta (U+093C) + रूर
    # NFKC decomposes U+095B (a composition exclusion); the nukta is kept as a mark.
    assert basic_normalize(precomposed) == "\u091c\u093c\u0930\u0942\u0930"
    assert basic_normalize(combining) == "\u091c\u093c\u0930\u0942\u0930"
    assert WHISPER(precomposed).split() == ["\u091c", "\u0930", "\u0930"]


def test_danda_and_double_danda_become_spaces():
    assert basic_normalize("यह सही है। क्या यह सही है॥") == "यह सही है क्या यह सही है"
    assert basic_normalize("समाप्त।।") == "समाप्त"


def test_zero_width_joiner_and_non_joiner_are_dropped():
    conjunct = "\u0915\u094d\u0937"  # क्ष: ka, virama, ssa
    assert basic_normalize("\u0915\u094d\u200d\u0937") == conjunct  # ZWJ: half form requested
    assert basic_normalize("\u0915\u094d\u200c\u0937") == conjunct  # ZWNJ: explicit virama
    assert basic_normalize("\u200dक्षमा\u200c") == "\u0915\u094d\u0937\u092e\u093e"


def test_devanagari_digits_are_kept_as_they_are():
    assert basic_normalize("१२३ रुपये") == "१२३ रुपये"
    # The rupee sign is a currency symbol (Sc): a space.
    assert basic_normalize("₹१००") == "१००"


def test_latin_punctuation_case_and_brackets_mixed_in():
    text = "नमस्ते, Dr. Sharma! (हँसी) [शोर] क्या   हाल है?"
    assert basic_normalize(text) == "नमस्ते dr sharma क्या हाल है"
    assert basic_normalize("<unk> ठीक—है…") == "ठीक है"


def test_the_normalizer_of_a_language_and_its_name():
    assert normalizer_for("hi") is basic_normalize
    assert normalizer_for(None) is basic_normalize
    assert normalizer_name("hindi") == BASIC_NORMALIZER == "asrbench-basic-marks/1"
    assert normalizer_name("English") == ENGLISH_NORMALIZER == "whisper-english/1"


def test_gate_knows_the_english_normalizer_name():
    # gate/accuracy.py may not import measure/: it keeps the name of the one normalizer that
    # entries recorded before names existed share with today's runs.
    from asrbench.gate.accuracy import UNVERSIONED_SAME_AS

    assert UNVERSIONED_SAME_AS == {ENGLISH_NORMALIZER}


def test_normalized_hindi_wer_counts_words_and_the_whisper_figure_fragments():
    # One word of four differs (संस्कृतियों -> संस्कृति): 1 substitution / 4 words.
    # Whisper's fragments: reference प र च न | स स क त य | क | अध ययन = 12 tokens; the
    # prediction lacks the fragment य: 1 deletion / 12.
    rates = error_rates(["प्राचीन संस्कृतियों का अध्ययन"], ["प्राचीन संस्कृति का अध्ययन"], "hi")
    assert rates.normalizer == "asrbench-basic-marks/1"
    assert rates.wer == pytest.approx(1 / 4)
    assert rates.wer_normalized == pytest.approx(1 / 4)
    assert rates.wer_normalized_whisper == pytest.approx(1 / 12)


def test_english_keeps_the_english_normalizer_and_one_figure():
    rates = error_rates(["Hello, World!"], ["hello world"], "english")
    assert rates.normalizer == "whisper-english/1"
    assert rates.wer_normalized == rates.wer_normalized_whisper == 0.0


def test_per_utterance_edit_counts_hand_worked():
    # "a b" -> "a x": 1 word substitution of 2; characters "a b" -> "a x": 1 of 3.
    rates = error_rates(["a b", "c d e f"], ["a x", "c d e f"], None)
    assert [e.as_list() for e in rates.edits] == [[1, 2, 1, 3, 1, 2], [0, 4, 0, 7, 0, 4]]
    # The corpus figures are the sums: 1/6 words, 1/10 characters.
    assert rates.wer == pytest.approx(1 / 6) and rates.cer == pytest.approx(1 / 10)


def test_edit_counts_of_a_reference_empty_once_normalized_are_zero():
    # "[noise]" normalizes to nothing: left out of the normalized WER, so 0 of 0 there; the raw
    # counts still see 1 word substituted ("[noise]!") and 1 character inserted of 7.
    rates = error_rates(["[noise]"], ["[noise]!"], "hi")
    assert rates.edits[0].as_list() == [1, 1, 1, 7, 0, 0]

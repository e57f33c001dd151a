"""Error rates (jiwer), the text normalizers, and throughput statistics.

Raw WER is what optimum-habana's example reports (jiwer on the strings as they are, no
normalization). Normalized WER applies Whisper's EnglishTextNormalizer for English and, for
every other language, asrbench's basic normalizer (`basic_normalize`): Whisper's
BasicTextNormalizer behaviour except that Unicode marks (category M*) are kept. Whisper's turns
every mark into a space, which splits Devanagari words at their vowel signs and viramas
("प्राचीन" -> "प र च न"), so its normalized Hindi WER counts word fragments. That figure is still
reported, as `wer_normalized_whisper`, for comparison with leaderboards that use it.

Each normalizer has a versioned name (NORMALIZERS) recorded with every run and baseline entry:
normalized WERs made with different normalizers are never compared. Bump the number whenever a
normalizer's output changes for any input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asrbench.formats.model import rate_spread

ENGLISH = {"en", "english"}

#: the normalizer of English text: Whisper's EnglishTextNormalizer (with the tokenizer's
#: spelling map)
ENGLISH_NORMALIZER = "whisper-english/1"
#: the normalizer of any other language: basic_normalize
BASIC_NORMALIZER = "asrbench-basic-marks/1"
#: Whisper's BasicTextNormalizer, for wer_normalized_whisper only
WHISPER_BASIC_NORMALIZER = "whisper-basic/1"

#: text between square or angle brackets ("[noise]", "<unk>") and between parentheses goes
_BRACKETED = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
#: ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER (category Cf) only choose a glyph form (e.g. the
#: half form of a Devanagari conjunct): the letters are the same, so they are dropped
_JOINERS = str.maketrans({"\u200c": None, "\u200d": None})


def basic_normalize(text: str) -> str:
    """Lower case; drop bracketed and parenthesized text, ZWJ and ZWNJ; NFKC; every symbol and
    punctuation character (category S*, P*: also the danda and double danda) becomes a space;
    marks (M*) stay; whitespace runs collapse to one space, none at either end."""
    text = _BRACKETED.sub("", text.lower())
    text = unicodedata.normalize("NFKC", text).translate(_JOINERS)
    text = "".join(" " if unicodedata.category(c)[0] in "SP" else c for c in text)
    return " ".join(text.lower().split())


def normalizer_name(language: str | None) -> str:
    """The versioned name of the normalizer normalizer_for(language) returns."""
    return ENGLISH_NORMALIZER if _is_english(language) else BASIC_NORMALIZER


def _is_english(language: str | None) -> bool:
    return language is not None and language.lower() in ENGLISH


def normalizer_for(language: str | None, english_spelling: dict[str, str] | None = None
                   ) -> Callable[[str], str]:
    """Whisper's EnglishTextNormalizer for English, basic_normalize for anything else."""
    if _is_english(language):
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # noqa: PLC0415  transformers: off the light paths

        return EnglishTextNormalizer(english_spelling or {})
    return basic_normalize


def whisper_normalizer_for(language: str | None, english_spelling: dict[str, str] | None = None
                           ) -> Callable[[str], str]:
    """Whisper's own normalizers: EnglishTextNormalizer for English, BasicTextNormalizer (marks
    become spaces) for anything else: what the Open ASR Leaderboard applies."""
    if _is_english(language):
        return normalizer_for(language, english_spelling)
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer  # noqa: PLC0415  transformers: off the light paths

    return BasicTextNormalizer()


@dataclass(frozen=True)
class Edits:
    """Edit counts of one utterance: what corpus-level error rates sum (jiwer's counting)."""

    word_errors: int  # substitutions + deletions + insertions, raw words
    words: int  # words of the raw reference
    char_errors: int
    chars: int  # characters of the raw reference
    normalized_word_errors: int  # 0 where the normalized reference is empty (left out)
    normalized_words: int

    def as_list(self) -> list[int]:
        """The compact form reports and baselines store."""
        return [self.word_errors, self.words, self.char_errors, self.chars,
                self.normalized_word_errors, self.normalized_words]


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates over one run's utterances."""

    wer: float  # raw: jiwer on the texts as stored and as decoded
    wer_normalized: float  # after the language's normalizer (`normalizer`)
    cer: float  # raw character error rate
    normalized_excluded: int  # pairs left out of wer_normalized: reference empty once normalized
    normalizer: str = BASIC_NORMALIZER  # versioned name of the normalizer of wer_normalized
    wer_normalized_whisper: float = float("nan")  # after Whisper's own normalizer
    edits: tuple[Edits, ...] = ()  # per utterance, in the order given


def _word_edits(reference: str, prediction: str) -> tuple[int, int]:
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    out = jiwer.process_words(reference, prediction)
    return (out.substitutions + out.deletions + out.insertions,
            out.substitutions + out.deletions + out.hits)


def _char_edits(reference: str, prediction: str) -> tuple[int, int]:
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    out = jiwer.process_characters(reference, prediction)
    return (out.substitutions + out.deletions + out.insertions,
            out.substitutions + out.deletions + out.hits)


def _normalized_wer(references: Sequence[str], predictions: Sequence[str],
                    normalize: Callable[[str], str]) -> tuple[float, int]:
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    pairs = [(normalize(r).strip(), normalize(p).strip()) for r, p in zip(references, predictions)]
    kept = [(r, p) for r, p in pairs if r]
    value = jiwer.wer([r for r, _ in kept], [p for _, p in kept]) if kept else float("nan")
    return float(value), len(pairs) - len(kept)


def utterance_edits(reference: str, prediction: str, normalize: Callable[[str], str]) -> Edits:
    """One utterance's edit counts: raw words, raw characters, normalized words."""
    word_errors, words = _word_edits(reference, prediction) if reference.strip() else (
        len(prediction.split()), 0)
    char_errors, chars = _char_edits(reference, prediction) if reference.strip() else (
        len(prediction.strip()), 0)
    norm_ref, norm_pred = normalize(reference).strip(), normalize(prediction).strip()
    norm_errors, norm_words = _word_edits(norm_ref, norm_pred) if norm_ref else (0, 0)
    return Edits(word_errors, words, char_errors, chars, norm_errors, norm_words)


def error_rates(references: Sequence[str], predictions: Sequence[str], language: str | None,
                english_spelling: dict[str, str] | None = None) -> ErrorRates:
    """Raw WER, normalized WER (ours and Whisper's) and CER with jiwer (corpus level: total
    edits / total reference words), and each utterance's edit counts."""
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    if len(references) != len(predictions):
        raise ValueError("references and predictions differ in length")
    if not references:
        raise ValueError("no utterances to score")
    normalize = normalizer_for(language, english_spelling)
    wer_norm, excluded = _normalized_wer(references, predictions, normalize)
    if _is_english(language):
        wer_whisper = wer_norm  # the same normalizer
    else:
        wer_whisper, _ = _normalized_wer(references, predictions, whisper_normalizer_for(language))
    return ErrorRates(
        wer=float(jiwer.wer(list(references), list(predictions))),
        wer_normalized=wer_norm,
        cer=float(jiwer.cer(list(references), list(predictions))),
        normalized_excluded=excluded,
        normalizer=normalizer_name(language),
        wer_normalized_whisper=wer_whisper,
        edits=tuple(utterance_edits(r, p, normalize) for r, p in zip(references, predictions)),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Throughput:
    """Samples per second over the timed passes."""

    per_pass: tuple[float, ...]  # samples/s of each pass, in order
    median: float
    minimum: float
    maximum: float
    rsd: float  # relative standard deviation (stdev / mean); 0 with a single pass


def throughput(samples: int, pass_seconds: Sequence[float]) -> Throughput:
    """samples / seconds for each pass, and their spread."""
    if not pass_seconds or any(s <= 0 for s in pass_seconds):
        raise ValueError("need at least one timed pass with positive duration")
    rates = tuple(samples / s for s in pass_seconds)
    return Throughput(rates, *rate_spread(rates))

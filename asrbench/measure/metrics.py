"""Error rates (jiwer), Whisper's text normalizers, and throughput statistics.

Raw WER is what optimum-habana's example reports (jiwer on the strings as they are, no
normalization). Normalized WER applies Whisper's EnglishTextNormalizer for English and
BasicTextNormalizer otherwise, as the Open ASR Leaderboard does. Note that BasicTextNormalizer
replaces every Unicode mark (category M*) with a space, which splits Devanagari words at their
vowel signs: normalized Hindi WER counts those fragments as words. Both are regression signals.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

ENGLISH = {"en", "english"}


def normalizer_for(language: str | None, english_spelling: dict[str, str] | None = None
                   ) -> Callable[[str], str]:
    """Whisper's EnglishTextNormalizer for English, BasicTextNormalizer for anything else."""
    from transformers.models.whisper.english_normalizer import (BasicTextNormalizer,
                                                                EnglishTextNormalizer)

    if language is not None and language.lower() in ENGLISH:
        return EnglishTextNormalizer(english_spelling or {})
    return BasicTextNormalizer()


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates over one run's utterances."""

    wer: float  # raw: jiwer on the texts as stored and as decoded
    wer_normalized: float  # after the language's Whisper normalizer
    cer: float  # raw character error rate
    normalized_excluded: int  # pairs left out of wer_normalized: reference empty once normalized


def error_rates(references: Sequence[str], predictions: Sequence[str], language: str | None,
                english_spelling: dict[str, str] | None = None) -> ErrorRates:
    """Compute raw WER, normalized WER and CER with jiwer (corpus level: total edits / words)."""
    import jiwer

    if len(references) != len(predictions):
        raise ValueError("references and predictions differ in length")
    if not references:
        raise ValueError("no utterances to score")
    normalize = normalizer_for(language, english_spelling)
    pairs = [(normalize(r).strip(), normalize(p).strip()) for r, p in zip(references, predictions)]
    kept = [(r, p) for r, p in pairs if r]
    wer_norm = (jiwer.wer([r for r, _ in kept], [p for _, p in kept]) if kept else float("nan"))
    return ErrorRates(
        wer=float(jiwer.wer(list(references), list(predictions))),
        wer_normalized=float(wer_norm),
        cer=float(jiwer.cer(list(references), list(predictions))),
        normalized_excluded=len(pairs) - len(kept),
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
    mean = statistics.fmean(rates)
    rsd = statistics.stdev(rates) / mean if len(rates) > 1 else 0.0
    return Throughput(rates, statistics.median(rates), min(rates), max(rates), rsd)

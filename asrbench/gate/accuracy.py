"""Error-rate changes beyond their point values: is the normalizer the same, and how sure is
the change?

Two questions the gate asks before and after it compares error rates:

- `check_normalizer`: a normalized WER made with another text normalizer (a different name or
  version) is not the same quantity, so an entry recorded with one is refused, never compared.
- `accuracy_change`: when transcripts changed, the paired bootstrap over utterances (Bisani &
  Ney, "Bootstrap estimates for confidence intervals in ASR performance evaluation", ICASSP
  2004) gives a confidence interval of each error rate's change. Utterances are resampled with
  replacement, the same resample for both sides, and the corpus-level rate (total errors /
  total reference words) of each side is recomputed on it; the interval is the percentile range
  of the differences. A real shift moves most resamples the same way; the same errors
  reshuffled across utterances do not.

Edit counts are what reports keep per utterance and baselines per id (EDIT_INDEX); runs or
entries written before they were kept get no interval.
"""

from __future__ import annotations

from typing import Optional, Sequence

from asrbench.errors import AsrbenchError
from asrbench.formats.model import AccuracyChange, BaselineEntry, ErrorRateChange, Run

#: where each error rate's (errors, reference length) sit in an utterance's edit counts
EDIT_INDEX = {"wer": (0, 1), "cer": (2, 3), "wer_normalized": (4, 5)}
CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 20040517  # fixed: the same report and baseline always give the same interval
#: normalizers that baseline entries recorded before names were kept (none recorded) used
#: unchanged: Whisper's EnglishTextNormalizer (asrbench.measure.metrics.ENGLISH_NORMALIZER).
#: Non-English entries then used Whisper's BasicTextNormalizer, which nothing uses any more.
UNVERSIONED_SAME_AS = frozenset({"whisper-english/1"})
_CHUNK = 500  # resamples drawn at once (bounds memory: chunk x utterances indices)


def normalizer_problem(run: Run, entry: BaselineEntry) -> Optional[str]:
    """Why the entry's normalized WER cannot be compared with the run's (one line), or None."""
    ours, theirs = run.metrics.normalizer, entry.normalizer
    if ours == theirs or (theirs is None and ours in UNVERSIONED_SAME_AS):
        return None
    config_id = run.config.id
    if ours is None:
        return (f"{config_id}: the report predates versioned normalizers and the baseline entry "
                f"uses {theirs}: regenerate the report with `asrbench run`")
    recorded = theirs or "no recorded normalizer (Whisper's BasicTextNormalizer, which splits " \
                         "words at Unicode marks)"
    return (f"{config_id}: the baseline entry's normalized WER was made with {recorded}, this "
            f"run's with {ours}: not comparable, refresh the entry with `asrbench baseline "
            f"update --report <this report> --only {config_id}`")


def check_normalizer(run: Run, entry: BaselineEntry) -> None:
    """Refuse (AsrbenchError) an entry whose normalized WER came from another normalizer."""
    problem = normalizer_problem(run, entry)
    if problem:
        raise AsrbenchError(problem)


def paired_bootstrap(base: Sequence[Sequence[int]], run: Sequence[Sequence[int]],
                     confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                     seed: int = SEED) -> list[tuple[float, float, float]]:
    """For rows of (errors, reference length) pairs per utterance, side by side in `base` and
    `run` (same utterance on the same row; several rates per row: columns 2k, 2k + 1), each
    rate's (run - base, low, high): the corpus-level difference and its percentile interval."""
    import numpy as np

    b = np.asarray(base, dtype=np.int64)
    r = np.asarray(run, dtype=np.int64)
    if b.shape != r.shape or b.ndim != 2 or b.shape[1] % 2 or not len(b):
        raise ValueError("need the same utterances on both sides, as (errors, length) pairs")
    rates = b.shape[1] // 2
    rng = np.random.default_rng(seed)
    n = len(b)
    diffs = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, resamples, _CHUNK):
            idx = rng.integers(0, n, size=(min(_CHUNK, resamples - start), n))
            sb, sr = b[idx].sum(axis=1), r[idx].sum(axis=1)  # (chunk, columns)
            diffs.append(sr[:, 0::2] / sr[:, 1::2] - sb[:, 0::2] / sb[:, 1::2])
        draws = np.concatenate(diffs)
        point = r.sum(axis=0)[0::2] / r.sum(axis=0)[1::2] - b.sum(axis=0)[0::2] / b.sum(axis=0)[1::2]
    tail = (1.0 - confidence) / 2 * 100
    out = []
    for k in range(rates):
        column = draws[:, k][np.isfinite(draws[:, k])]
        if not np.isfinite(point[k]) or not len(column):
            out.append((float("nan"), float("nan"), float("nan")))
            continue
        low, high = np.percentile(column, [tail, 100 - tail])
        out.append((float(point[k]), float(low), float(high)))
    return out


def accuracy_change(run: Run, entry: BaselineEntry, confidence: float = CONFIDENCE,
                    resamples: int = RESAMPLES, seed: int = SEED) -> Optional[AccuracyChange]:
    """The intervals of WER, normalized WER and CER changes over the utterances with edit
    counts on both sides, and how many got better / worse / stayed; None without any."""
    current = {u.id: u.edits for u in run.utterances if u.edits is not None}
    shared = [uid for uid in current if uid in entry.edits]
    if not shared:
        return None
    base = [entry.edits[uid] for uid in shared]
    ours = [current[uid] for uid in shared]
    columns = [i for metric in EDIT_INDEX for i in EDIT_INDEX[metric]]
    intervals = paired_bootstrap([[row[i] for i in columns] for row in base],
                                 [[row[i] for i in columns] for row in ours],
                                 confidence, resamples, seed)
    changes = []
    for (metric, (errors, _)), (delta, low, high) in zip(EDIT_INDEX.items(), intervals):
        if delta != delta:  # NaN: no reference words on a side (e.g. all normalized away)
            continue
        better = sum(1 for b, o in zip(base, ours) if o[errors] < b[errors])
        worse = sum(1 for b, o in zip(base, ours) if o[errors] > b[errors])
        changes.append(ErrorRateChange(metric=metric, delta=delta, low=low, high=high,
                                       better=better, worse=worse,
                                       unchanged=len(shared) - better - worse))
    return AccuracyChange(utterances=len(shared), confidence=confidence, resamples=resamples,
                          seed=seed, changes=changes)


def describe_change(change: ErrorRateChange, confidence: float = CONFIDENCE) -> str:
    """e.g. "WER +0.021 (95% CI +0.004 .. +0.038), 5 utterances worse, 1 better"."""
    name = {"wer": "WER", "wer_normalized": "normalized WER", "cer": "CER"}.get(change.metric,
                                                                                change.metric)
    return (f"{name} {change.delta:+.3f} ({confidence:.0%} CI {change.low:+.3f} .. "
            f"{change.high:+.3f}), {change.worse} utterance{'s' * (change.worse != 1)} worse, "
            f"{change.better} better" + ("" if change.significant else ": not significant"))

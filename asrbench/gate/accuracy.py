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

Utterances of one speaker are not independent (the same voice, accent and microphone), so
where the data names speakers (Common Voice `client_id`, kept as each utterance's pseudonymous
`speaker`) the bootstrap is blockwise: it resamples speakers, each drawn speaker bringing all
of its utterances (Peng & Liu, arXiv 1912.09508). Where speakers are unknown it falls back to
utterances and says so. No interval (and no significance claim) is given from fewer than
MIN_UNITS resampled units (speakers, or utterances): with fewer, a percentile interval says
nothing (one utterance gives the interval delta .. delta). The report records the method,
the units and the minimum (AccuracyChange).

Edit counts are what reports keep per utterance and baselines per id (EDIT_INDEX); runs or
entries written before they were kept get no interval. They are never trusted: a report's
raw word and character counts are recomputed from its transcripts (the counting of
asrbench.measure.metrics), and counts that are impossible for the transcripts (the normalized
ones, a baseline's) are refused (check_edits), in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
#: the fewest resampled units (speakers; utterances where speakers are unknown) an interval of
#: an error-rate change is given from: below it, the change and the utterances that moved are
#: shown, with no interval and no significance claim
MIN_UNITS = 10


def normalizer_problem(run: Run, entry: BaselineEntry) -> str | None:
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
    import numpy as np  # noqa: PLC0415  numpy: off the light paths

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
        point = (r.sum(axis=0)[0::2] / r.sum(axis=0)[1::2]
                 - b.sum(axis=0)[0::2] / b.sum(axis=0)[1::2])
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


def _blocks(run: Run, shared: list[str]) -> tuple[str, list[list[int]], str]:
    """How the shared utterances are resampled: ("speakers", the positions in `shared` of each
    speaker's utterances, "") where every one names its speaker; else ("utterances", one block
    per utterance, why)."""
    speakers = {u.id: u.speaker for u in run.utterances}
    unknown = sum(1 for uid in shared if not speakers.get(uid))
    if unknown == 0:
        groups: dict[str, list[int]] = {}
        for position, uid in enumerate(shared):
            groups.setdefault(speakers[uid] or "", []).append(position)  # (all named)
        return "speakers", list(groups.values()), ""
    why = ("the data names no speakers" if unknown == len(shared) else
           f"{unknown} of {len(shared)} utterances name no speaker")
    return ("utterances", [[i] for i in range(len(shared))],
            f"{why}: utterances resampled as if independent")


def _block_sums(rows: list[list[int]], blocks: list[list[int]]) -> list[list[int]]:
    """Each block's column sums: a corpus-level rate over resampled blocks is the same as over
    the utterances they hold."""
    return [[sum(rows[i][c] for i in block) for c in range(len(rows[0]))] for block in blocks]


def accuracy_change(run: Run, entry: BaselineEntry, confidence: float = CONFIDENCE,
                    resamples: int = RESAMPLES, seed: int = SEED,
                    min_units: int = MIN_UNITS) -> AccuracyChange | None:
    """The changes of WER, normalized WER and CER over the utterances with edit counts on both
    sides, how many got better / worse / stayed, and each change's interval (blockwise over
    speakers where known, else over utterances; none from fewer than `min_units` units); None
    without any shared utterance."""
    current = {u.id: u.edits for u in run.utterances if u.edits is not None}
    shared = [uid for uid in current if uid in entry.edits]
    if not shared:
        return None
    base = [entry.edits[uid] for uid in shared]
    ours = [current[uid] for uid in shared]
    columns = [i for metric in EDIT_INDEX for i in EDIT_INDEX[metric]]
    method, blocks, note = _blocks(run, shared)
    base_rows = _block_sums([[row[i] for i in columns] for row in base], blocks)
    our_rows = _block_sums([[row[i] for i in columns] for row in ours], blocks)
    enough = len(blocks) >= min_units
    intervals: Sequence[tuple[float, float | None, float | None]]
    if enough:
        intervals = paired_bootstrap(base_rows, our_rows, confidence, resamples, seed)
    else:
        intervals = [(_point(base_rows, our_rows, k), None, None) for k in range(len(EDIT_INDEX))]
        unit = "speaker" if method == "speakers" else "utterance"
        note = "; ".join(part for part in (
            f"no interval from {len(blocks)} {unit}{'s' * (len(blocks) != 1)}: fewer than "
            f"{min_units}", note) if part)
    changes = []
    for (metric, (errors, _)), (delta, low, high) in zip(EDIT_INDEX.items(), intervals):
        if delta != delta:  # NaN: no reference words on a side (e.g. all normalized away)
            continue
        better = sum(1 for b, o in zip(base, ours) if o[errors] < b[errors])
        worse = sum(1 for b, o in zip(base, ours) if o[errors] > b[errors])
        changes.append(ErrorRateChange(metric=metric, delta=delta, low=low, high=high,
                                       better=better, worse=worse,
                                       unchanged=len(shared) - better - worse))
    return AccuracyChange(utterances=len(shared), method=method, units=len(blocks),
                          min_units=min_units, note=note, confidence=confidence,
                          resamples=resamples, seed=seed, changes=changes)


def _point(base: list[list[int]], run: list[list[int]], k: int) -> float:
    """Rate k's corpus-level run - base (NaN where a side has no reference length)."""
    def rate(rows: list[list[int]]) -> float:
        errors, length = sum(r[2 * k] for r in rows), sum(r[2 * k + 1] for r in rows)
        return errors / length if length else float("nan")

    return rate(run) - rate(base)


# -- edit counts checked against the transcripts ---------------------------------------------

def raw_edits(reference: str, prediction: str) -> tuple[int, int, int, int]:
    """(word errors, reference words, char errors, reference chars) as
    asrbench.measure.metrics.utterance_edits counts them (jiwer; an empty reference: every
    predicted word / character is an error of a zero-length reference)."""
    import jiwer  # noqa: PLC0415  jiwer (rapidfuzz, click): only when scoring

    if not reference.strip():
        return len(prediction.split()), 0, len(prediction.strip()), 0
    words = jiwer.process_words(reference, prediction)
    chars = jiwer.process_characters(reference, prediction)
    return (words.substitutions + words.deletions + words.insertions,
            words.substitutions + words.deletions + words.hits,
            chars.substitutions + chars.deletions + chars.insertions,
            chars.substitutions + chars.deletions + chars.hits)


def _word_bound(text: str) -> int:
    """The most words any normalizer makes of `text`: a word takes at least one character, and
    a symbol may become a word of its own ("%" -> "percent"), so twice the characters, plus
    one."""
    return 2 * len(text) + 1


def impossible_edits(edits: list[int], prediction: str, reference: str | None) -> str | None:
    """Why one utterance's stored edit counts cannot be its transcripts' (a phrase), or None.
    Without a reference only bounds are checked: an edit distance is at most the longer of
    the two sequences."""
    words, ref_words, chars, ref_chars, norm_errors, norm_words = edits
    if reference is not None:
        expected = raw_edits(reference, prediction)
        if tuple(edits[:4]) != expected:
            return (f"edit counts {edits[:4]} (word errors, words, char errors, chars), the "
                    f"transcripts give {list(expected)}")
        bound = _word_bound(reference)
        if norm_words > bound:
            return (f"{norm_words} normalized reference words from a {len(reference)}-character "
                    "reference")
    if words > max(ref_words, len(prediction.split())):
        return (f"{words} word errors with {ref_words} reference words and "
                f"{len(prediction.split())} predicted")
    if chars > max(ref_chars, len(prediction)):
        return (f"{chars} character errors with {ref_chars} reference characters and "
                f"{len(prediction)} predicted")
    if norm_errors > max(norm_words, _word_bound(prediction)):
        return (f"{norm_errors} normalized word errors with {norm_words} normalized reference "
                f"words and a {len(prediction)}-character prediction")
    return None


def rates_problem(run: Run) -> str | None:
    """Why a run's stated error rates are not the ratios of its utterances' edit counts (corpus
    level, as measure.metrics.error_rates computes them), or None; nothing is checked where an
    utterance has no counts (older reports)."""
    rows = [u.edits for u in run.utterances]
    if not rows or any(row is None for row in rows):
        return None
    for metric, (errors_at, length_at) in EDIT_INDEX.items():
        stated = getattr(run.metrics, metric, None)
        errors = sum(row[errors_at] for row in rows if row is not None)
        length = sum(row[length_at] for row in rows if row is not None)
        if stated is None or not length:
            continue
        if not math.isclose(stated, errors / length, rel_tol=1e-9, abs_tol=1e-12):
            return (f"{metric} {stated:.6g}, where its {len(rows)} utterances' edit counts give "
                    f"{errors}/{length} = {errors / length:.6g}")
    return None


def check_edits(run: Run, entry: BaselineEntry | None = None) -> None:
    """Refuse (AsrbenchError, one line) a run whose edit counts disagree with its transcripts,
    whose error rates are not its edit counts' or whose samples/s is not its passes', or a
    baseline entry whose counts are impossible for its predictions."""
    for u in run.utterances:
        if u.edits is None:
            continue
        problem = impossible_edits(u.edits, u.prediction, u.reference)
        if problem:
            raise AsrbenchError(f"{run.config.id}: utterance {u.id}: {problem}: "
                                "the report's edit counts disagree with its transcripts "
                                "(edited by hand?); regenerate it with `asrbench run`")
    problem = rates_problem(run)
    if problem:
        raise AsrbenchError(f"{run.config.id}: {problem}: the report's error rates disagree with "
                            "its utterances (edited by hand?); regenerate it with `asrbench run`")
    problem = run.throughput_problem()
    if problem:
        raise AsrbenchError(f"{run.config.id}: {problem}: the report's samples/s disagrees with "
                            "its passes (edited by hand?); regenerate it with `asrbench run`")
    if entry is None:
        return
    for uid, edits in entry.edits.items():
        prediction = entry.predictions.get(uid)
        if prediction is None:
            continue
        problem = impossible_edits(edits, prediction, None)
        if problem:
            raise AsrbenchError(f"{run.config.id}: the baseline entry's utterance "
                                f"{uid}: {problem}: its edit counts are "
                                "impossible for its predictions; record the entry again")

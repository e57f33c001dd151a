"""Test splits: (id, 16 kHz audio, reference) from a Common Voice directory, the Hub, or JSONL.

Every row that cannot be used is kept as a Skipped entry with its reason, so a report says
exactly what was left out; nothing is dropped silently and no bad clip stops the run.

Two ways in: load_split decodes every clip up front (peers, the reference child: small
splits); index_split reads only the rows and each clip's header (a SplitIndex, no audio), so
a run decodes clips batch by batch and a data-parallel rank decodes only its shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrbench.errors import AsrbenchError
from asrbench.measure.data import commonvoice, hub, manifest
from asrbench.measure.data.audio import SAMPLE_RATE, AudioError, decode_audio

# the sources' row type and helpers live in rows.py, which the sources import (not this
# package: it imports the sources, and a cycle would remain); re-exported here
from asrbench.measure.data.rows import RawRow, speaker_id, unusable


@dataclass(frozen=True)
class Utterance:
    """One usable test item."""

    id: str  # stable id (Common Voice clip name, manifest id, hub row index)
    audio: np.ndarray  # float32 mono at SAMPLE_RATE
    reference: str  # reference transcript, as stored
    speaker: str | None = None  # pseudonymous speaker id (speaker_id), None where unknown

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Skipped:
    """A row left out, and why."""

    id: str
    reason: str
    position: int = field(default=-1, compare=False)  # row number in the split (for ordering)


@dataclass
class LoadedSplit:
    """The usable utterances of a split and the rows that were dropped."""

    name: str  # human-readable source description
    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return float(sum(u.audio_seconds for u in self.utterances))


@dataclass(frozen=True)
class IndexedRow:
    """A row that passed the index's checks: its audio is decoded only when its batch is."""

    position: int  # row number in the split
    id: str
    reference: str  # stripped, never empty
    samples: int  # length at 16 kHz the header declares (sorts the batches)
    audio: Callable[..., np.ndarray]  # decodes on demand (max_seconds=...); raises AudioError
    speaker: str | None = None  # pseudonymous speaker id, None where unknown


@dataclass
class SplitIndex:
    """A split's usable-looking rows and the rows already dropped, without any audio."""

    name: str  # human-readable source description
    max_duration: float  # clips this long or longer are dropped when decoded
    rows: list[IndexedRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def part(self, indices: range) -> SplitIndex:
        """The rows of a shard (contiguous indices into `rows`), with the index's skipped rows."""
        return SplitIndex(self.name, self.max_duration, self.rows[indices.start:indices.stop],
                          list(self.skipped))

    @classmethod
    def of(cls, split: LoadedSplit, max_duration: float = float("inf")) -> SplitIndex:
        """An index over a split already in memory (its clips are "decoded" from memory)."""
        rows = [IndexedRow(i, u.id, u.reference, len(u.audio),
                           lambda max_seconds=None, audio=u.audio: audio, u.speaker)
                for i, u in enumerate(split.utterances)]
        return cls(split.name, max_duration, rows, list(split.skipped))


def decode_row(row: IndexedRow, max_duration: float) -> Utterance | Skipped:
    """A row's audio decoded, or the reason it cannot be used (the same reasons as collect)."""
    try:
        audio = row.audio(max_seconds=max_duration)
    except AudioError as exc:
        return Skipped(row.id, str(exc), row.position)
    seconds = len(audio) / SAMPLE_RATE
    if seconds >= max_duration:
        return Skipped(row.id, f"too long: {seconds:.1f} s >= {max_duration:g} s", row.position)
    return Utterance(row.id, audio, row.reference, row.speaker)


def collect(name: str, rows: Iterable[RawRow], max_duration: float, limit: int | None,
            progress: bool = False) -> LoadedSplit:
    """Decode rows, keeping usable ones and recording why the others were dropped. Ids are
    unique: a later row with an id already seen is skipped as a duplicate (its transcript
    would overwrite the first one's in a baseline)."""
    from tqdm.auto import tqdm  # noqa: PLC0415  tqdm.auto probes for a notebook: only where a bar is drawn

    split = LoadedSplit(name=name)
    seen: set[str] = set()
    bar = tqdm(desc=f"loading {_printable(name)}", unit="clip",
               disable=not progress, leave=False)
    for row in rows:
        bar.update(1)
        if limit is not None and len(split.utterances) >= limit:
            break
        reference = (row.reference or "").strip()
        if not reference:
            split.skipped.append(Skipped(row.id, "empty reference"))
            continue
        if row.id in seen:
            split.skipped.append(Skipped(row.id, "duplicate: an earlier row has the same id"))
            continue
        # an id is taken by the first row that has it, whether or not its clip decodes, as in
        # index(): else a run (index, then decode) and its reference child (collect) would
        # keep different rows of one id after a clip that fails only when decoded
        seen.add(row.id)
        try:
            audio = row.audio(max_seconds=max_duration)
        except AudioError as exc:
            split.skipped.append(Skipped(row.id, str(exc)))
            continue
        seconds = len(audio) / SAMPLE_RATE
        if seconds >= max_duration:
            split.skipped.append(Skipped(row.id,
                                         f"too long: {seconds:.1f} s >= {max_duration:g} s"))
            continue
        split.utterances.append(Utterance(row.id, audio, reference, row.speaker))
    bar.close()
    if not split.utterances:
        raise none_usable(name, split.skipped)
    return split


def none_usable(name: str, skipped: list[Skipped]) -> AsrbenchError:
    """The one-line error of a split with no usable utterance, naming a few skipped rows."""
    reasons = "; ".join(f"{s.id}: {s.reason}" for s in skipped[:3])
    return AsrbenchError(f"{name}: no usable utterances"
                         + (f" ({len(skipped)} skipped, e.g. {reasons})" if reasons else ""))


def index(name: str, rows: Iterable[RawRow], max_duration: float, limit: int | None,
          progress: bool = False) -> SplitIndex:
    """The rows collect would keep, judged from their headers without decoding: empty
    references, repeated ids and clips that are missing, unreadable or too long by their
    header are skipped here; a clip that fails only when decoded (truncated, NaN samples) is
    skipped by the run, row by row. `limit` counts rows that pass here."""
    from tqdm.auto import tqdm  # noqa: PLC0415  tqdm.auto probes for a notebook: only where a bar is drawn

    found = SplitIndex(name=name, max_duration=max_duration)
    seen: set[str] = set()
    bar = tqdm(desc=f"indexing {_printable(name)}", unit="row",
               disable=not progress, leave=False)
    for position, row in enumerate(rows):
        bar.update(1)
        if limit is not None and len(found.rows) >= limit:
            break
        reference = (row.reference or "").strip()
        if not reference:
            found.skipped.append(Skipped(row.id, "empty reference", position))
            continue
        if row.id in seen:
            found.skipped.append(Skipped(row.id, "duplicate: an earlier row has the same id",
                                         position))
            continue
        try:
            # Without a header probe (rows built in memory) the clip is decoded once, here.
            samples = (row.probe(max_seconds=max_duration) if row.probe is not None
                       else len(row.audio(max_seconds=max_duration)))
        except AudioError as exc:
            found.skipped.append(Skipped(row.id, str(exc), position))
            continue
        seconds = samples / SAMPLE_RATE
        if seconds >= max_duration:
            found.skipped.append(Skipped(row.id, f"too long: {seconds:.1f} s >= "
                                         f"{max_duration:g} s", position))
            continue
        seen.add(row.id)
        found.rows.append(IndexedRow(position, row.id, reference, samples, row.audio,
                                     row.speaker))
    bar.close()
    if not found.rows:
        raise none_usable(name, found.skipped)
    return found


def _printable(name: str) -> str:
    """A dataset's name (its path) for the progress bar on the terminal: a character that is
    not printable (an escape sequence's ESC, a bidi override) shows as "?"."""
    return "".join(c if c.isprintable() else "?" for c in name)


def index_split(dataset: str, dataset_config: str | None = None, split: str = "test",
                text_column: str = "sentence", max_duration: float = 30.0,
                limit: int | None = None, progress: bool = False) -> SplitIndex:
    """A test split's index (rows and headers, no audio): see load_split for the sources."""
    name, rows = _source(dataset, dataset_config, split, text_column)
    return index(name, rows, max_duration, limit, progress)


def load_split(dataset: str, dataset_config: str | None = None, split: str = "test",
               text_column: str = "sentence", max_duration: float = 30.0,
               limit: int | None = None, progress: bool = False) -> LoadedSplit:
    """Load a test split from a local Common Voice directory, a JSONL manifest, or the Hub."""
    name, rows = _source(dataset, dataset_config, split, text_column)
    return collect(name, rows, max_duration, limit, progress)


def _source(dataset: str, dataset_config: str | None, split: str,
            text_column: str) -> tuple[str, Iterable[RawRow]]:
    """Which source a --dataset names, described, and its rows."""
    path = Path(dataset).expanduser()
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError as exc:  # a name too long for the file system, a permission denied
        raise AsrbenchError(f"dataset {dataset} cannot be read ({exc.strerror or exc})") from None
    if (is_file or is_dir) and text_column != "sentence":
        # a Common Voice table's text is its `sentence` column, a manifest's its `text`: the
        # option was ignored without a word (and still named in the config's id)
        raise AsrbenchError(f"--text-column {text_column} applies to Hub datasets only: "
                            f"{dataset} is a local {'manifest' if is_file else 'directory'}, "
                            "whose text column is fixed (sentence; a manifest's text)")
    if is_file:
        if path.suffix != ".jsonl":
            raise AsrbenchError(f"{path}: a dataset file must be a JSONL manifest (*.jsonl)")
        name, rows = str(path), manifest.rows(path)
    elif is_dir:
        name, rows = commonvoice.rows(path, dataset_config, split)
    elif path.is_absolute() or dataset.startswith((".", "~")) or path.suffix == ".jsonl":
        raise AsrbenchError(f"dataset {dataset} does not exist")
    else:
        name, rows = hub.rows(dataset, dataset_config, split, text_column)
    return name, rows


__all__ = ["SAMPLE_RATE", "AudioError", "IndexedRow", "LoadedSplit", "RawRow", "Skipped",
           "SplitIndex", "Utterance", "collect", "decode_audio", "decode_row", "index",
           "index_split", "load_split", "speaker_id", "unusable"]

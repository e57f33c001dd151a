"""Test splits: (id, 16 kHz audio, reference) from a Common Voice directory, the Hub, or JSONL.

Every row that cannot be used is kept as a Skipped entry with its reason, so a report says
exactly what was left out; nothing is dropped silently and no bad clip stops the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from asrbench.measure.data.audio import SAMPLE_RATE, AudioError, decode_audio
from asrbench.errors import AsrbenchError


@dataclass(frozen=True)
class Utterance:
    """One usable test item."""

    id: str  # stable id (Common Voice clip name, manifest id, hub row index)
    audio: np.ndarray  # float32 mono at SAMPLE_RATE
    reference: str  # reference transcript, as stored

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Skipped:
    """A row left out, and why."""

    id: str
    reason: str


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
class RawRow:
    """A row before decoding: where its audio is and what it should say."""

    id: str
    audio: Callable[..., np.ndarray]  # decodes on demand (max_seconds=...); raises AudioError
    reference: str | None


def unusable(reason: str) -> Callable[[], np.ndarray]:
    """An audio loader for a row without usable audio: it raises AudioError(reason)."""

    def fail(max_seconds: float | None = None) -> np.ndarray:
        raise AudioError(reason)

    return fail


def collect(name: str, rows: Iterable[RawRow], max_duration: float, limit: int | None,
            progress: bool = False) -> LoadedSplit:
    """Decode rows, keeping usable ones and recording why the others were dropped. Ids are
    unique: a later row with an id already seen is skipped as a duplicate (its transcript
    would overwrite the first one's in a baseline)."""
    from tqdm.auto import tqdm

    split = LoadedSplit(name=name)
    seen: set[str] = set()
    bar = tqdm(desc=f"loading {name}", unit="clip", disable=not progress, leave=False)
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
        try:
            audio = row.audio(max_seconds=max_duration)
        except AudioError as exc:
            split.skipped.append(Skipped(row.id, str(exc)))
            continue
        seconds = len(audio) / SAMPLE_RATE
        if seconds >= max_duration:
            split.skipped.append(Skipped(row.id, f"too long: {seconds:.1f} s >= {max_duration:g} s"))
            continue
        seen.add(row.id)
        split.utterances.append(Utterance(row.id, audio, reference))
    bar.close()
    if not split.utterances:
        reasons = "; ".join(f"{s.id}: {s.reason}" for s in split.skipped[:3])
        raise AsrbenchError(f"{name}: no usable utterances"
                            + (f" ({len(split.skipped)} skipped, e.g. {reasons})" if reasons else ""))
    return split


def load_split(dataset: str, dataset_config: str | None = None, split: str = "test",
               text_column: str = "sentence", max_duration: float = 30.0,
               limit: int | None = None, progress: bool = False) -> LoadedSplit:
    """Load a test split from a local Common Voice directory, a JSONL manifest, or the Hub."""
    from asrbench.measure.data import commonvoice, hub, manifest

    path = Path(dataset).expanduser()
    if path.is_file():
        if path.suffix != ".jsonl":
            raise AsrbenchError(f"{path}: a dataset file must be a JSONL manifest (*.jsonl)")
        name, rows = str(path), manifest.rows(path)
    elif path.is_dir():
        name, rows = commonvoice.rows(path, dataset_config, split)
    elif path.is_absolute() or dataset.startswith((".", "~")) or path.suffix == ".jsonl":
        raise AsrbenchError(f"dataset {dataset} does not exist")
    else:
        name, rows = hub.rows(dataset, dataset_config, split, text_column)
    return collect(name, rows, max_duration, limit, progress)


__all__ = ["SAMPLE_RATE", "AudioError", "LoadedSplit", "RawRow", "Skipped", "Utterance",
           "collect", "decode_audio", "load_split", "unusable"]

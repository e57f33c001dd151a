"""Hugging Face Hub datasets (datasets >= 4, Parquet): audio bytes decoded by asrbench.

The audio column is cast with Audio(decode=False), so datasets hands over the encoded bytes
(and path) and no torchcodec is needed; soundfile decodes them like any local clip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from asrbench.errors import AsrbenchError, first_line
from asrbench.measure.data.audio import decode_audio, probe_audio
from asrbench.measure.data.rows import RawRow, speaker_id, unusable

if TYPE_CHECKING:
    import numpy as np


def load(dataset_id: str, config: str | None, split: str):
    """datasets.load_dataset with remote code off; failures become one-line user errors."""
    import datasets  # noqa: PLC0415  datasets: slow to import, Hub datasets only

    try:
        return datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # network, missing config/split, auth: all user-fixable
        raise AsrbenchError(
            f"could not load dataset {dataset_id!r} (config {config!r}, split {split!r}) from the "
            f"Hugging Face Hub: {first_line(exc)}. Offline? Pass a local Common Voice directory "
            "or a JSONL manifest to --dataset.") from None


def audio_column(ds) -> str:
    """The first column typed as Audio, else a column named 'audio'."""
    import datasets  # noqa: PLC0415  datasets: slow to import, Hub datasets only

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Audio):
            return name
    if "audio" in ds.column_names:
        return "audio"
    raise AsrbenchError(f"dataset has no audio column (columns: {', '.join(ds.column_names)})")


def rows(dataset_id: str, config: str | None, split: str, text_column: str,
         ds=None) -> tuple[str, Iterator[RawRow]]:
    """Describe the split and iterate its rows; `ds` lets tests pass an in-memory Dataset."""
    import datasets  # noqa: PLC0415  datasets: slow to import, Hub datasets only

    if ds is None:
        ds = load(dataset_id, config, split)
    if text_column not in ds.column_names:
        raise AsrbenchError(f"{dataset_id}: no text column {text_column!r} "
                            f"(columns: {', '.join(ds.column_names)}); use --text-column")
    column = audio_column(ds)
    ds = ds.cast_column(column, datasets.Audio(decode=False))
    name = f"{dataset_id}" + (f"/{config}" if config else "") + f"/{split}"
    return name, _iter_rows(ds, column, text_column, split)


def _iter_rows(ds, column: str, text_column: str, split: str) -> Iterator[RawRow]:
    for index, record in enumerate(ds):
        audio = record.get(column) or {}
        row_id = str(record.get("path") or audio.get("path") or f"{split}:{index}")
        row_id = row_id.rsplit("/", 1)[-1].rsplit(".", 1)[0] or f"{split}:{index}"
        loader: Callable[..., np.ndarray]
        if audio.get("bytes"):
            loader = functools.partial(decode_audio, audio["bytes"])
            probe = functools.partial(probe_audio, audio["bytes"])
        else:
            # A row's path is data from the Hub: never a file to open on this machine.
            loader = unusable("row has no audio bytes (a path alone is not read)")
            probe = None
        text = record.get(text_column)
        yield RawRow(row_id, loader, text if isinstance(text, str) else None, probe,
                     speaker_id(record.get("client_id")))  # Common Voice on the Hub has it

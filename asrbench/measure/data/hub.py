"""Hugging Face Hub datasets (datasets >= 4, Parquet): audio bytes decoded by asrbench.

The audio column is cast with Audio(decode=False), so datasets hands over the encoded bytes
(and path) and no torchcodec is needed; soundfile decodes them like any local clip.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from asrbench.errors import AsrbenchError, first_line
from asrbench.measure.data.audio import decode_audio, probe_audio
from asrbench.measure.data.rows import RawRow, speaker_id, unusable
from asrbench.measure.reach import TRUE_VALUES, hub_offline_requested, hub_reachable

if TYPE_CHECKING:
    import numpy as np


#: environment variables that ask the Hugging Face libraries to stay off the network
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def offline_requested() -> bool:
    """Whether the environment asks for offline mode: huggingface_hub's (reach.py), or
    datasets' own older HF_DATASETS_OFFLINE."""
    return (hub_offline_requested()
            or os.environ.get("HF_DATASETS_OFFLINE", "").upper() in TRUE_VALUES)


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """datasets and huggingface_hub in offline mode while the block runs: a cached copy loads,
    anything else fails at once. They read HF_HUB_OFFLINE when first imported, so setting the
    variable later (or a Hub that cannot be reached) would leave datasets retrying the network
    with back-off for about 20 s before its error; their module flags are what they consult
    on each call."""
    import datasets.config  # noqa: PLC0415  datasets: slow to import, Hub datasets only
    import huggingface_hub.constants  # noqa: PLC0415  (comes with datasets)

    flags = [(module, "HF_HUB_OFFLINE") for module in (datasets.config,
                                                        huggingface_hub.constants)
             if hasattr(module, "HF_HUB_OFFLINE")]
    before = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, before, strict=True):
            setattr(module, name, value)


def load(dataset_id: str, config: str | None, split: str):
    """datasets.load_dataset with remote code off; failures become one-line user errors. With
    offline mode asked for, or the Hub out of reach (a 3 s probe), only a cached copy loads,
    and anything else fails at once."""
    import datasets  # noqa: PLC0415  datasets: slow to import, Hub datasets only

    requested = offline_requested()
    offline = requested or not hub_reachable()
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            return datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # network, missing config/split, auth: all user-fixable
        why = ""
        if requested:
            why = (" (offline mode: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE;"
                   " only a cached copy loads)")
        elif offline:
            why = " (the Hub cannot be reached: only a cached copy loads)"
        raise AsrbenchError(
            f"could not load dataset {dataset_id!r} (config {config!r}, split {split!r}) from the "
            f"Hugging Face Hub: {first_line(exc)}{why}. Offline? Pass a local Common Voice "
            "directory or a JSONL manifest to --dataset.") from None


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

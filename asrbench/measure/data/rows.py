"""What every source of a split (commonvoice.py, manifest.py, hub.py) yields: a row before
decoding, its pseudonymous speaker id, and the loader of a row without usable audio. A module
of its own so that the sources need not import the package that dispatches to them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asrbench.measure.data.audio import AudioError


@dataclass(frozen=True)
class RawRow:
    """A row before decoding: where its audio is and what it should say."""

    id: str
    audio: Callable[..., np.ndarray]  # decodes on demand (max_seconds=...); raises AudioError
    reference: str | None
    # samples at 16 kHz from the header alone (max_seconds=...); raises AudioError. None: the
    # index decodes the clip once to learn its length
    probe: Callable[..., int] | None = None
    speaker: str | None = None  # pseudonymous speaker id (speaker_id), None where unknown


def speaker_id(value: object) -> str | None:
    """A pseudonymous speaker id for grouping a speaker's utterances (the blockwise bootstrap,
    gate/accuracy.py): the first 16 hex digits of sha256 over the dataset's speaker field
    (Common Voice's `client_id`), so a report never stores the dataset's own id; None where
    the field is missing or empty."""
    if not isinstance(value, str) or not value.strip():
        return None
    return hashlib.sha256(value.strip().encode("utf-8", "surrogateescape")).hexdigest()[:16]


def unusable(reason: str) -> Callable[[], np.ndarray]:
    """An audio loader for a row without usable audio: it raises AudioError(reason)."""

    def fail(max_seconds: float | None = None) -> np.ndarray:
        raise AudioError(reason)

    return fail

"""Audio decoding: soundfile for every container it reads, soxr to resample to 16 kHz mono."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Whisper's feature extractor expects 16 kHz


class AudioError(Exception):
    """A clip that cannot be used; the message is the reason listed in the report."""


def decode_audio(source: str | Path | bytes) -> np.ndarray:
    """Decode a file path or encoded bytes to float32 mono at 16 kHz.

    Raises AudioError with a short reason (missing, empty, undecodable, no samples).
    """
    import soundfile as sf
    import soxr

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"missing audio file {path.name}")
        if path.stat().st_size == 0:
            raise AudioError(f"empty audio file {path.name} (0 bytes)")
        handle: object = str(path)
    else:
        if not source:
            raise AudioError("empty audio bytes")
        handle = io.BytesIO(source)
    try:
        samples, rate = sf.read(handle, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"undecodable audio: {str(exc).strip() or type(exc).__name__}") from None
    if samples.shape[0] == 0:
        raise AudioError("audio has no samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    if not np.all(np.isfinite(mono)):
        raise AudioError("audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32)

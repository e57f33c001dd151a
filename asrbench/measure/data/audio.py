"""Audio decoding: soundfile for every container it reads, soxr to resample to 16 kHz mono."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Whisper's feature extractor expects 16 kHz


class AudioError(Exception):
    """A clip that cannot be used; the message is the reason listed in the report."""


#: a decode shorter than this share of the length the file declares is a truncated file
TRUNCATION_TOLERANCE = 0.98


def _reason(exc: Exception, exists: bool) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if exists and "does not exist" in text:
        # libsndfile's message for a file it cannot recognise says "does not exist".
        return "not a recognised audio file (no known audio format in it)"
    return f"undecodable audio: {text}"


def _open(source: str | Path | bytes):
    """A soundfile handle for a path or bytes, and a way to open it again; AudioError for a
    missing or empty source."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if not path.is_file():
                raise AudioError(f"missing audio file {path.name}")
            size = path.stat().st_size
        except OSError as exc:  # a name too long for the file system, a permission denied
            raise AudioError(f"audio file {path.name} cannot be read "
                             f"({exc.strerror or exc})") from None
        if size == 0:
            raise AudioError(f"empty audio file {path.name} (0 bytes)")
        return str(path), lambda: str(path)
    if not source:
        raise AudioError("empty audio bytes")
    return io.BytesIO(source), lambda: io.BytesIO(source)


#: the largest sample magnitude a clip may have: float audio is -1..1, integer PCM read raw is
#: below 2**31; far above, the log-mel features overflow float32 and come out not a number
#: (whisper's extractor does from about 1e18), and the model decodes garbage that would be scored
MAX_SAMPLE_MAGNITUDE = 1e12


def resampled_length(frames: int, rate: int) -> int:
    """Samples at SAMPLE_RATE that `frames` at `rate` resample to (soxr rounds to nearest)."""
    return frames if rate == SAMPLE_RATE else int(frames * SAMPLE_RATE / rate + 0.5)


def probe_audio(source: str | Path | bytes, max_seconds: float | None = None) -> int:
    """The samples at 16 kHz a clip will decode to, from its header alone (no decoding): the
    same refusals as decode_audio for a missing, empty, unrecognised or too long clip. A clip
    that passes may still fail to decode (truncated, NaN samples): decode_audio says so."""
    import soundfile as sf  # noqa: PLC0415  soundfile: only when decoding audio

    handle, _ = _open(source)
    try:
        info = sf.info(handle)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(_reason(exc, isinstance(source, (str, Path)))) from None
    declared = info.frames / info.samplerate if info.samplerate else 0.0
    if max_seconds is not None and declared >= max_seconds:
        raise AudioError(f"too long: {declared:.1f} s >= {max_seconds:g} s")
    length = resampled_length(info.frames, info.samplerate) if info.samplerate else 0
    if info.frames > 0 and length == 0:
        raise AudioError(f"audio has no samples at {SAMPLE_RATE} Hz ({info.frames} at "
                         f"{info.samplerate} Hz)")
    return length


def _wav_declared_bytes(source: str | Path | bytes) -> tuple[int, int] | None:
    """(bytes a RIFF/WAVE file's data chunk declares, bytes the file holds after that chunk's
    header), or None: not a WAV, no data chunk in its first 64 KiB, or a length left open by a
    streaming writer (0 or 0xFFFFFFFF)."""
    if isinstance(source, (bytes, bytearray)):
        head, size = bytes(source[:65536]), len(source)
    else:
        with open(source, "rb") as fh:
            head = fh.read(65536)
            size = os.fstat(fh.fileno()).st_size
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset:offset + 4], int.from_bytes(head[offset + 4:offset + 8],
                                                                  "little")
        if chunk == b"data":
            if length in (0, 0xFFFFFFFF):
                return None
            return length, size - (offset + 8)
        offset += 8 + length + (length & 1)  # chunks are padded to an even length
    return None


def decode_audio(source: str | Path | bytes, max_seconds: float | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes to float32 mono at 16 kHz.

    The length the file declares is read from its header first: a clip of `max_seconds` or
    more is refused before it is decoded, and a decode that comes out shorter than declared
    (a truncated file) is refused rather than scored against its whole reference. Raises
    AudioError with a short reason (missing, empty, unrecognised, truncated, too long, ...).
    """
    import soundfile as sf  # noqa: PLC0415  soundfile: only when decoding audio
    import soxr  # noqa: PLC0415  soxr: only when decoding audio

    handle, reopen = _open(source)
    try:
        info = sf.info(handle)
        declared = info.frames / info.samplerate if info.samplerate else 0.0
        if max_seconds is not None and declared >= max_seconds:
            raise AudioError(f"too long: {declared:.1f} s >= {max_seconds:g} s")
        samples, rate = sf.read(reopen(), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(_reason(exc, isinstance(source, (str, Path)))) from None
    if samples.shape[0] == 0:
        raise AudioError("audio has no samples")
    header = _wav_declared_bytes(source)
    if header is not None and header[0] > header[1]:
        # libsndfile takes a WAV's length from the file's size, so the check below cannot see
        # a WAV cut short: its data chunk's header still declares the whole length
        raise AudioError(f"truncated: the WAV holds {header[1]} of the {header[0]} data bytes "
                         "its header declares")
    if info.frames > 0 and samples.shape[0] < TRUNCATION_TOLERANCE * info.frames:
        raise AudioError(f"truncated: decoded {samples.shape[0] / rate:.2f} s of the "
                         f"{declared:.2f} s the file declares")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    if mono.shape[0] == 0:  # a few frames at a very high rate: nothing at 16 kHz
        raise AudioError(f"audio has no samples at {SAMPLE_RATE} Hz ({samples.shape[0]} at "
                         f"{rate} Hz)")
    if not np.all(np.isfinite(mono)):
        raise AudioError("audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(mono)))
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(f"samples far outside -1..1 (largest magnitude {peak:.3g}): its "
                         "features would overflow (not a number) and be decoded as garbage")
    return np.ascontiguousarray(mono, dtype=np.float32)

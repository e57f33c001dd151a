"""Model file digests once per process, started ahead beside the imports
(asrbench/measure/hashing.py, models.hash_ahead from the preflight)."""

from __future__ import annotations

import hashlib
import threading

import pytest

from asrbench.measure import hashing, models


def test_sha256_files_is_the_digest_of_the_prefix_then_the_files_in_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"x" * (hashing.CHUNK_BYTES + 3))  # more than one read
    second.write_bytes(b"yz")
    expected = hashlib.sha256(b"pre" + first.read_bytes() + second.read_bytes()).hexdigest()
    assert hashing.sha256_files([first, second], prefix=b"pre") == expected


def test_a_digest_under_way_is_waited_for_not_taken_again():
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        started.set()
        release.wait(30)
        return "digest"

    key = ("test", object())
    thread = hashing.ahead(lambda: hashing.once(key, slow))
    assert started.wait(30)
    waiter_result = []
    waiter = threading.Thread(target=lambda: waiter_result.append(hashing.once(key, slow)))
    waiter.start()
    release.set()
    waiter.join(30)
    thread.join(30)
    assert waiter_result == ["digest"] and calls == [1]
    assert hashing.once(key, slow) == "digest" and calls == [1]


def test_an_error_reaches_the_caller_and_is_not_kept():
    key = ("test", object())
    attempts = []

    def failing() -> str:
        attempts.append(1)
        raise FileNotFoundError("gone")

    thread = hashing.ahead(lambda: hashing.once(key, failing))  # the error is dropped there
    thread.join(30)
    with pytest.raises(FileNotFoundError):
        hashing.once(key, failing)  # computed again, and this caller meets it
    assert len(attempts) == 2
    assert hashing.once(key, lambda: "now readable") == "now readable"


def test_the_preflight_starts_the_weights_digest_ahead(tiny_whisper, monkeypatch):
    """hash_ahead(folder) hashes its weights on another thread; the identity the run records
    later is that digest, read once."""
    monkeypatch.setattr(hashing, "_DIGESTS", {})
    reads = []
    real = models.sha256_files
    monkeypatch.setattr(models, "sha256_files", lambda files: reads.append(
        threading.current_thread().name) or real(files))
    models.hash_ahead(str(tiny_whisper)).join(30)
    digest = models.weights_digest(tiny_whisper)  # what the thread took
    assert reads == ["asrbench-hash-ahead"]
    expected = hashlib.sha256((tiny_whisper / "model.safetensors").read_bytes()).hexdigest()
    assert digest == expected


def test_nothing_is_started_for_a_hub_id_or_a_missing_folder(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(models, "ahead", started.append)
    models.hash_ahead("openai/whisper-small")
    models.hash_ahead(str(tmp_path / "missing"))
    assert started == []
    models.hash_ahead("bundled:whisper-base")
    assert len(started) == 1  # the source package's digest, then the converted weights'

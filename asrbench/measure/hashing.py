"""The sha256 digests a run takes of model files (the bundled model's source package, the
weights a model loads), each once per process, and started ahead on a thread of their own.

A counters-only run of the bundled model reads 2 x 145 MB for them: about 0.2 s on a quiet
2-core machine, on the path to the verdict while the run's one thread imports transformers
with the other core idle. hashlib and file reads let go of the interpreter's lock, so a
digest started ahead (models.hash_ahead, from the preflight) runs beside those imports; the
thread that needs it waits for the one under way instead of reading the files again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

#: bytes read at a time (each read and update lets go of the interpreter lock: fewer, larger
#: ones take it back fewer times from the thread importing beside them)
CHUNK_BYTES = 8 << 20

_LOCK = threading.Lock()
#: key -> the digest, done or under way
_DIGESTS: dict[Hashable, Future] = {}


def sha256_files(paths: Iterable[Path], prefix: bytes = b"") -> str:
    """sha256 over `prefix` then each file's bytes in the order given (8 MiB reads)."""
    digest = hashlib.sha256(prefix)
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()


def once(key: Hashable, compute: Callable[[], Any]) -> Any:
    """compute() once per process for `key`; a caller that finds it under way on another
    thread waits for that. An error reaches every caller waiting and is not kept: the next
    call computes again."""
    with _LOCK:
        future = _DIGESTS.get(key)
        mine = future is None
        if future is None:
            future = _DIGESTS[key] = Future()
    if mine:
        try:
            future.set_result(compute())
        except BaseException as exc:
            with _LOCK:
                _DIGESTS.pop(key, None)
            future.set_exception(exc)
            raise
    return future.result()


def ahead(task: Callable[[], Any]) -> threading.Thread:
    """Run `task` (digests through once()) on a daemon thread; its errors are dropped here:
    the thread that needs the digest computes it again and meets the error itself."""
    def run() -> None:
        try:
            task()
        except Exception:  # noqa: BLE001  re-raised where the digest is needed (once())
            pass

    thread = threading.Thread(target=run, name="asrbench-hash-ahead", daemon=True)
    thread.start()
    return thread

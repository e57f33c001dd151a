"""Batches prepared ahead of decoding, in bounded memory: a split's index cut into batches,
decoded and featurized by torch DataLoader workers a few batches ahead, and an on-disk cache
that hands the timed passes one batch's features at a time.

Memory holds at most `workers * prefetch` prepared batches plus the one being decoded,
whatever the split's size; the features of a whole pass live on disk (a temporary directory
removed when the run ends, also on an interrupt), never in memory.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asrbench.errors import AsrbenchError
from asrbench.measure.data import IndexedRow, Skipped, Utterance, decode_row
from asrbench.processes import die_with_parent

#: batches each DataLoader worker prepares ahead of the one being decoded
PREFETCH_BATCHES = 2
#: at most this many worker processes decode and featurize
MAX_WORKERS = 4


def plan_batches(rows: list[IndexedRow], size: int) -> list[list[int]]:
    """Indices into `rows`, batch by batch in decoding order: longest clips first (by the
    length their headers declare), ties in split order, as Evaluator.featurize sorts."""
    order = sorted(range(len(rows)), key=lambda i: (-rows[i].samples, i))
    return [order[start:start + size] for start in range(0, len(order), size)]


@dataclass
class PreparedBatch:
    """One batch's features and what the run keeps about its rows."""

    number: int  # batch number in the plan
    features: np.ndarray | None  # the model's main input; None: every row of it was skipped
    mask: np.ndarray | None = None  # the extractor's attention mask, where the model takes one
    rows: list[int] = field(default_factory=list)  # indices into the index's rows, decoding order
    samples: list[int] = field(default_factory=list)  # decoded length of each of those rows
    skipped: list[Skipped] = field(default_factory=list)  # rows that failed to decode
    seconds: float = 0.0  # decoding and feature extraction, in the worker


class BatchSource:
    """A map-style dataset over a plan: item k is batch k decoded and featurized (any
    featurize(list of audio) -> Batches with one batch, e.g. Evaluator.featurize)."""

    def __init__(self, rows: list[IndexedRow], plan: list[list[int]], max_duration: float,
                 featurize: Callable[[list[np.ndarray]], Any]) -> None:
        self.rows = rows
        self.plan = plan
        self.max_duration = max_duration
        self.featurize = featurize

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, number: int) -> PreparedBatch:
        start = time.perf_counter()
        batch = PreparedBatch(number, None)
        kept: list[tuple[int, Utterance]] = []
        for index in self.plan[number]:
            decoded = decode_row(self.rows[index], self.max_duration)
            if isinstance(decoded, Skipped):
                batch.skipped.append(decoded)
            else:
                kept.append((index, decoded))
        if kept:
            featurized = self.featurize([u.audio for _, u in kept])
            if len(featurized.features) != 1:
                raise RuntimeError("featurize made several batches of one batch's clips")
            # numpy crosses the worker pipe as plain bytes (no shared memory, whose size a
            # container may cap); the real rows in the order featurize put them
            batch.features = featurized.features[0].numpy()
            mask = featurized.mask(0)
            batch.mask = None if mask is None else mask.numpy()
            batch.rows = [kept[i][0] for i in featurized.order]
            batch.samples = [len(kept[i][1].audio) for i in featurized.order]
        batch.seconds = time.perf_counter() - start
        return batch


def _as_is(item: PreparedBatch) -> PreparedBatch:
    return item


def loader_workers(batches: int | None = None) -> int:
    """Worker processes for the prefetch of `batches` batches: half this process's cores (the
    other half decode), at most MAX_WORKERS; 0 (prepare in this process) where fork is
    unavailable, and for one batch, which nothing decodes beside: the decode waits for it
    either way, and a worker adds its start (4 English clips on the 2-core VM: 0.20 s to the
    batch through a worker, 0.06 s in this process)."""
    if not sys.platform.startswith("linux"):
        return 0  # spawn would pickle the featurizer's owner (the model) into every worker
    if batches is not None and batches <= 1:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, (cores or 1) // 2))


def prefetch(source: BatchSource, workers: int | None = None,
             ahead: int = PREFETCH_BATCHES) -> Generator[PreparedBatch, None, None]:
    """Batches of `source` in order, prepared by a torch DataLoader `ahead` batches per worker
    in advance (bounded: at most workers * ahead waiting)."""
    from torch.utils.data import DataLoader  # noqa: PLC0415  torch: off the light paths

    workers = loader_workers(len(source)) if workers is None else workers
    workers = min(workers, len(source))
    # torch's stubs: a Dataset subclass (BatchSource is map-style by __getitem__/__len__, which
    # DataLoader takes), and a collate_fn of lists (with batch_size=None it gets single items)
    loader: DataLoader[PreparedBatch] = DataLoader(
        source,  # type: ignore[arg-type]
        batch_size=None, shuffle=False, num_workers=workers,
        collate_fn=_as_is,  # type: ignore[arg-type]
        prefetch_factor=ahead if workers else None,
        multiprocessing_context="fork" if workers else None,
        worker_init_fn=(functools.partial(_ignore_signals, parent=os.getpid())
                        if workers else None))
    try:
        yield from loader
    except Exception as exc:
        raise unwrapped(exc) from exc


def unwrapped(exc: Exception) -> Exception:
    """The error a DataLoader worker raised, as if raised here. torch re-raises a worker's error
    as the same type whose message is 'Caught X in DataLoader worker process N.' followed by the
    worker's traceback; a one-line error (an AsrbenchError, a rank's 'failed: ...' line) would
    show only that first line. Anything else, or a type that cannot be rebuilt, is left as is."""
    text = str(exc)
    lines = text.splitlines()
    if not lines or not (lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]):
        return exc
    kind = type(exc)
    names = (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: ")
    for index in range(len(lines) - 1, 0, -1):
        for name in names:
            if lines[index].startswith(name):
                message = "\n".join([lines[index][len(name):], *lines[index + 1:]])
                try:
                    return kind(message)
                except Exception:
                    return exc
    return exc


def _ignore_signals(worker_id: int, parent: int | None = None) -> None:
    """A forked worker would inherit the handlers that raise Interrupted and print a traceback
    each: Ctrl-C (sent to the whole process group) is left to the main process, which ends the
    workers when it stops; SIGTERM ends a worker quietly (the default action). A worker dies
    with its run (the parent-death signal, SIGKILL): a run killed with SIGKILL leaves none
    behind, waiting forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is not None:
        die_with_parent(parent)


#: a feature cache folder: asrbench-features-<pid of its run>-<random>
CACHE_PREFIX = "asrbench-features-"
_CACHE_NAME = re.compile(rf"^{CACHE_PREFIX}(\d+)-")
#: bytes a npy file adds to its array (the header), per stored batch
NPY_HEADER_BYTES = 128


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_orphaned_caches(directory: str | None = None) -> list[Path]:
    """Remove the feature caches whose run is gone (killed with SIGKILL, the machine lost
    power): folders named after a pid no process has. What was removed."""
    root = Path(directory or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _CACHE_NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
                removed.append(entry)
        except OSError:
            continue  # another user's, or removed by another run meanwhile
    return removed


def _size(number: float) -> str:
    return f"{number / 2 ** 20:.1f} MiB"


class FeatureCache:
    """One pass's features on disk, batch by batch (a .npy file each), read back one batch at
    a time and checked (size and SHA-256 as written) before use; the directory is removed on
    close (a context manager, so on errors too). Its name holds the run's pid: a run killed
    before it could remove it leaves it behind, and the next run removes it
    (remove_orphaned_caches)."""

    def __init__(self, directory: str | None = None) -> None:
        remove_orphaned_caches(directory)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-",
                                              dir=directory))
        except OSError as exc:
            raise AsrbenchError(f"cannot create the feature cache in "
                                f"{directory or tempfile.gettempdir()} ({exc.strerror or exc}): "
                                "set TMPDIR to a writable folder") from None
        self.real: list[int] = []  # real rows per stored batch
        self.rows: list[int] = []  # index rows in decoding order, every stored batch
        self.samples: list[int] = []  # decoded length of each of those rows
        # per stored batch: (features, mask) shapes and dtypes, real rows
        self.shapes: list[tuple] = []
        self.skipped: list[Skipped] = []  # rows that failed to decode
        self.seconds = 0.0  # decoding and feature extraction, summed over batches
        self.written: dict[str, tuple[int, str]] = {}  # file name -> (size, sha256)

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the cached features."""
        shutil.rmtree(self.path, ignore_errors=True)

    def check_space(self, needed: int, clips: int) -> None:
        """Refuse, before any work, a cache folder without room for `needed` bytes (the
        features of `clips` clips): one line naming the folder, what is needed and free."""
        try:
            stat = os.statvfs(self.path)
        except OSError:
            return
        free = stat.f_bavail * stat.f_frsize
        if free < needed:
            raise AsrbenchError(
                f"not enough space for the feature cache in {self.path.parent}: "
                f"{_size(needed)} needed ({clips} clip(s), ~{_size(needed / max(clips, 1))} "
                f"each), {_size(free)} free; set TMPDIR to a folder with more room, or run "
                "fewer clips (--limit)")

    def _save(self, name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        try:
            with open(self.path / name, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise AsrbenchError(f"cannot write the feature cache in {self.path.parent} "
                                f"({exc.strerror or exc}): set TMPDIR to a folder with more "
                                "room") from None
        self.written[name] = (len(data), hashlib.sha256(data).hexdigest())

    def _load(self, name: str) -> np.ndarray:
        size, digest = self.written[name]
        try:
            data = (self.path / name).read_bytes()
        except OSError as exc:
            raise AsrbenchError(f"the feature cache {self.path / name} cannot be read "
                                f"({exc.strerror or exc}): was it removed while the run "
                                "ran?") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise AsrbenchError(f"the feature cache {self.path / name} changed after it was "
                                f"written ({len(data)} bytes, {size} written, or another "
                                "digest): something else writes to this folder; rerun")
        array = np.load(io.BytesIO(data), allow_pickle=False)
        return array if array.flags.writeable else array.copy()  # torch wants it writable

    def fill(self, batches: Iterator[PreparedBatch]) -> Iterator[tuple[Any, Any, int]]:
        """Store each batch as it arrives and pass it on (for the warm-up): (features,
        attention mask or None, real rows)."""
        import torch  # noqa: PLC0415  torch: off the light paths

        for batch in batches:
            self.skipped.extend(batch.skipped)
            self.seconds += batch.seconds
            if batch.features is None:
                continue
            number = len(self.real)
            self._save(f"{number}.npy", batch.features)
            if batch.mask is not None:
                self._save(f"{number}.mask.npy", batch.mask)
            self.real.append(len(batch.rows))
            self.shapes.append(tuple(None if a is None else (tuple(a.shape), str(a.dtype))
                                     for a in (batch.features, batch.mask)) + (len(batch.rows),))
            self.rows.extend(batch.rows)
            self.samples.extend(batch.samples)
            yield (torch.from_numpy(batch.features),
                   None if batch.mask is None else torch.from_numpy(batch.mask), len(batch.rows))

    def batch(self, number: int) -> tuple[Any, Any, int]:
        """One stored batch read from disk: (features, attention mask or None, real rows)."""
        import torch  # noqa: PLC0415  torch: off the light paths

        mask = f"{number}.mask.npy"
        return (torch.from_numpy(self._load(f"{number}.npy")),
                torch.from_numpy(self._load(mask)) if mask in self.written else None,
                self.real[number])

    def read(self) -> Iterator[tuple[Any, Any, int]]:
        """Every stored batch in decoding order, one at a time."""
        for number in range(len(self.real)):
            yield self.batch(number)

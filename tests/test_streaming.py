"""Batches prepared in the background in bounded memory (issue 24): the prefetch never runs
more than workers * ahead batches ahead, bad clips read in the background are still skipped
row by row, features live on disk (not in memory) and are computed once per batch, and a
streamed run gives the transcripts of the all-in-memory path."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asrbench.errors import AsrbenchError
from asrbench.measure.data import AudioError, IndexedRow, Skipped
from asrbench.measure.streaming import (
    BatchSource,
    FeatureCache,
    loader_workers,
    plan_batches,
    prefetch,
    unwrapped,
)

CORPUS = Path(__file__).resolve().parent.parent / "asrbench" / "corpus" / "commonvoice-mini"


def _row(position: int, samples: int, fail: str | None = None) -> IndexedRow:
    def audio(max_seconds=None):
        if fail:
            raise AudioError(fail)
        return np.full(samples, position, dtype=np.float32)

    return IndexedRow(position, f"r{position}", f"text {position}", samples, audio)


def _featurizer(started=None):
    """One row per clip holding (clip length, first sample); counts calls in a shared value."""

    def featurize(audio):
        if started is not None:
            with started.get_lock():
                started.value += 1
        features = torch.tensor([[float(len(a)), float(a[0])] for a in audio])
        return SimpleNamespace(features=[features], order=list(range(len(audio))),
                               mask=lambda index: None)

    return featurize


def test_plan_is_longest_first_ties_in_split_order():
    rows = [_row(0, 100), _row(1, 300), _row(2, 100), _row(3, 200), _row(4, 300)]
    assert plan_batches(rows, 2) == [[1, 4], [3, 0], [2]]


def test_prefetch_never_runs_more_than_workers_times_ahead_batches_ahead():
    workers, ahead, batches = 1, 2, 8
    started = multiprocessing.get_context("fork").Value("i", 0)
    rows = [_row(i, 1000 - i) for i in range(batches)]
    source = BatchSource(rows, plan_batches(rows, 1), 30.0, _featurizer(started))
    seen = []
    for consumed, batch in enumerate(prefetch(source, workers=workers, ahead=ahead), start=1):
        time.sleep(0.3)  # a slow decoding step: the worker runs ahead as far as it may
        assert started.value <= consumed + workers * ahead
        seen.append(batch.number)
    assert seen == list(range(batches)) and started.value == batches


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork: Linux only")
def test_one_batch_is_prepared_here_more_batches_by_workers():
    """One batch has no decode to run beside: a worker would only add its start."""
    assert loader_workers(1) == 0 and loader_workers(0) == 0
    assert loader_workers(2) >= 1 and loader_workers() >= 1
    for batches, expected in ((1, {os.getpid()}), (3, None)):
        rows = [_row(i, 1000 - i) for i in range(batches)]

        pids: set[int] = set()

        def featurize(audio, pids=pids):
            pids.add(os.getpid())
            return _featurizer()(audio)

        source = BatchSource(rows, plan_batches(rows, 1), 30.0, featurize)
        assert [batch.number for batch in prefetch(source)] == list(range(batches))
        if expected is not None:
            assert pids == expected  # prepared in this process
        else:
            assert pids == set()  # never here: the workers' copies of `pids` took theirs


def test_clips_failing_in_the_background_are_skipped_row_by_row():
    rows = [_row(0, 500), _row(1, 400, fail="truncated: decoded 1.00 s of the 2.00 s"),
            _row(2, 300), _row(3, 200, fail="audio contains NaN or infinite samples"),
            _row(4, 100, fail="audio has no samples")]
    source = BatchSource(rows, plan_batches(rows, 2), 30.0, _featurizer())
    with FeatureCache() as cache:
        stored = list(cache.fill(prefetch(source, workers=1)))
        assert [real for _, _, real in stored] == [1, 1]  # the last batch failed whole
        assert cache.rows == [0, 2] and cache.samples == [500, 300]
        assert cache.skipped == [
            Skipped("r1", "truncated: decoded 1.00 s of the 2.00 s"),
            Skipped("r3", "audio contains NaN or infinite samples"),
            Skipped("r4", "audio has no samples")]
        assert [s.position for s in cache.skipped] == [1, 3, 4]


def test_too_long_after_decoding_is_skipped_with_its_length():
    rows = [_row(0, 16000 * 3)]  # the header said less; the decoded clip is 3 s
    batch = BatchSource(rows, [[0]], 2.0, _featurizer())[0]
    assert batch.features is None and batch.skipped == [Skipped("r0", "too long: 3.0 s >= 2 s")]


@pytest.mark.parametrize("error", [RuntimeError("injected fault\nsecond line"),
                                   AsrbenchError("the featurizer refused: bad settings")])
def test_an_error_in_a_worker_is_raised_with_its_own_message(error):
    """torch wraps a worker's error as 'Caught X in DataLoader worker process 0.' + traceback;
    prefetch raises it again with the worker's own message, so one-line errors stay useful."""
    def featurize(audio):
        raise error

    rows = [_row(0, 100), _row(1, 100)]
    source = BatchSource(rows, plan_batches(rows, 1), 30.0, featurize)
    with pytest.raises(type(error)) as caught:
        list(prefetch(source, workers=1))
    assert str(caught.value) == str(error)


def test_unwrapped_leaves_other_errors_alone():
    plain = ValueError("Caught nothing")
    assert unwrapped(plain) is plain


def test_feature_cache_holds_batches_on_disk_and_removes_them(tmp_path):
    rows = [_row(i, 100 + i) for i in range(5)]
    source = BatchSource(rows, plan_batches(rows, 2), 30.0, _featurizer())
    cache = FeatureCache(directory=str(tmp_path))
    with cache:
        for _ in cache.fill(prefetch(source, workers=0)):
            pass
        assert sorted(p.name for p in cache.path.iterdir()) == ["0.npy", "1.npy", "2.npy"]
        read = [(features[:, 0].tolist(), mask, real) for features, mask, real in cache.read()]
        assert read == [([104.0, 103.0], None, 2), ([102.0, 101.0], None, 2), ([100.0], None, 1)]
    assert not cache.path.exists() and list(tmp_path.iterdir()) == []


def test_streamed_run_matches_the_in_memory_path_and_featurizes_each_batch_once(
        tiny_whisper, tmp_path, monkeypatch):
    from asrbench.config.settings import BenchConfig
    from asrbench.devices import get_device
    from asrbench.measure import streaming
    from asrbench.measure.data import index_split, load_split
    from asrbench.measure.engine import Evaluator, PreparedModel
    from asrbench.measure.models import load

    monkeypatch.setattr(streaming.tempfile, "tempdir", str(tmp_path))
    config = BenchConfig(model=str(tiny_whisper), dataset=str(CORPUS), dataset_config="en",
                         language="en", batch_size=4, generation_max_length=8, limit=10,
                         device="cpu")
    evaluator = Evaluator(PreparedModel(load(config.model), get_device("cpu"), "fp32", False),
                          config)
    calls = multiprocessing.get_context("fork").Value("i", 0)
    featurize = evaluator.featurize

    def counted(audio):
        with calls.get_lock():
            calls.value += 1
        return featurize(audio)

    evaluator.featurize = counted
    reads = []
    monkeypatch.setattr(FeatureCache, "batch",
                        lambda self, n, original=FeatureCache.batch: reads.append(n)
                        or original(self, n))
    split = load_split(str(CORPUS), "en", limit=10)
    run = evaluator.run(index_split(str(CORPUS), "en", limit=10), passes=2)
    assert calls.value == 3  # ceil(10 / 4) batches, featurized once for warm-up and passes
    # each timed pass reads each batch back once, in turn; the counted pass reads the first
    # batch of each distinct shape: batch 0 (4 rows) and the partial last batch 2 (2 rows)
    assert reads == [0, 1, 2] * 2 + [0, 2]
    assert list(tmp_path.iterdir()) == []  # the feature cache is gone
    evaluator.featurize = featurize
    assert [u.id for u in run.utterances] == [u.id for u in split.utterances]
    assert [u.audio_seconds for u in run.utterances] == [len(u.audio) / 16000
                                                         for u in split.utterances]
    # the old path: every clip featurized up front, one pass over the batches in memory
    assert [u.prediction for u in run.utterances] == evaluator.transcribe(
        [u.audio for u in split.utterances])


def test_ctrl_c_reaching_a_worker_does_not_kill_it_with_a_traceback(capfd):
    """Ctrl-C goes to the whole process group; a forked worker leaves it to the main process
    (which installed the handler that raises Interrupted): the worker's batch still arrives and
    no traceback of a worker is printed."""
    import os
    import signal

    def featurize(audio):
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends every process
        return _featurizer()(audio)

    def interrupted(signum, frame):
        raise KeyboardInterrupt("the main process's handler, inherited by a fork")

    rows = [_row(i, 1000 - i) for i in range(3)]
    source = BatchSource(rows, plan_batches(rows, 1), 30.0, featurize)
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        numbers = [batch.number for batch in prefetch(source, workers=1, ahead=1)]
    finally:
        signal.signal(signal.SIGINT, previous)
    assert numbers == [0, 1, 2]
    assert "Traceback" not in capfd.readouterr().err

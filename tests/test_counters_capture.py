"""Issue 29: a counters-only run on the emulated Gaudi counts the batches its warm-up would have
decoded while capturing their graphs (graphing.capturing_calls), one decode instead of a
warm-up and an eager counted pass. These tests hold it to "the same graphs, the same counts":

- in this process, on small modules wrapped by the HPU-graph emulator: a call counted while
  capturing counts exactly (ops, FLOPs, bytes allocated, peak live and retained bytes) what an
  eager call after a warm-up counts, captures exactly what that warm-up captured, and the
  graph it cached replays as the warm-up's does;
- in a child process (the emulator patches the process it runs in), a real counters-only run of
  the tiny Whisper on `--device hpu-emulated --graphs`: its encoder runs once per counted batch
  (main's code ran it twice for the first batch) and its counters, graph captures and
  transcripts equal those of the warm-up-then-eager path (capture_while_counting off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asrbench.devices import graphing
from asrbench.devices.emulation.graphs import STATS, wrap_in_hpu_graph
from asrbench.devices.hpu_emulated import EmulatedHPUDevice
from asrbench.measure.counters import OpCounter, decoder_setup

ROOT = Path(__file__).resolve().parent.parent


class Block(torch.nn.Module):
    """Intermediates that die inside the call (two large ones in turn: held by the capture,
    they would raise the peak), an output that outlives it, a state buffer updated in place,
    and a Python call counter."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(16.0).reshape(4, 4) / 10, requires_grad=False)
        self.register_buffer("state", torch.zeros(4))
        self.python_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.python_calls += 1
        h = torch.nn.functional.linear(x, self.w)  # composite: the counter decomposes it
        wide = h.repeat(1, 64)  # large and short-lived: the peak is one of these, not two
        g = torch.relu(h * 2) + wide.mean(-1, keepdim=True)
        del h, wide
        wide = g.repeat(1, 64)
        g = g - wide.mean(-1, keepdim=True) / 2
        del wide
        self.state.add_(g.sum(0))
        return (g + 1).argmax(-1)


def _decode(module: torch.nn.Module, x: torch.Tensor) -> list[int]:
    """A miniature decode: the step's input is a view of a tensor made in the batch (as the
    static decoder feeds `chosen[:, None]`), the output feeds the next call."""
    rows = []
    for _ in range(3):
        chosen = module(x[:, :4].clone())
        rows.append(chosen.tolist())
        x = x + chosen[:, None].float()
    return rows


def _count(module: torch.nn.Module, x: torch.Tensor, capture: bool) -> tuple:
    counter = OpCounter()
    context = graphing.capturing_calls() if capture else graphing.eager()
    with torch.inference_mode(), context:
        with counter:
            rows = _decode(module, x)
        retained = counter.live
    return (rows, dict(counter.counts["other"]), counter.flops, dict(counter.allocated),
            counter.peak, retained)


def test_a_call_counted_while_capturing_counts_what_an_eager_call_after_a_warm_up_does():
    x = torch.arange(24.0).reshape(3, 8) / 7
    warmed = wrap_in_hpu_graph(Block())
    before = STATS.captures
    with torch.inference_mode():
        _decode(warmed, x)  # the warm-up: captures
    warm_captures = STATS.captures - before
    warmed.state.zero_()
    eager = _count(warmed, x, capture=False)

    fresh = wrap_in_hpu_graph(Block())
    before = STATS.captures
    counted = _count(fresh, x, capture=True)
    assert STATS.captures - before == warm_captures == 1  # one shape, one graph
    assert counted == eager  # rows, ops, FLOPs, bytes, peak and retained bytes
    assert counted[4] > 0 and counted[5] == 0  # bytes were counted; nothing outlived the batch
    # the Python ran once per call: one capture, then eager calls for the would-be replays
    assert fresh.python_calls == 3
    assert list(fresh._asrbench_graph_cache) == list(warmed._asrbench_graph_cache)
    # and the graph it cached replays as the warm-up's does, in place and with new inputs
    for module in (warmed, fresh):
        module.state.zero_()
    with torch.inference_mode():
        replayed = [_decode(m, x + 1) for m in (warmed, fresh)]
    assert replayed[0] == replayed[1]
    assert torch.equal(warmed.state, fresh.state)
    assert fresh.python_calls == 3  # replays: no Python of the module ran


def test_the_decoders_one_time_setup_is_not_counted_in_a_counted_batch():
    """decoder_setup() pauses the counters of the batch being counted (_count_batch registers
    them: counted while capturing, or a counters-only CPU batch of the static decoder, where
    a timed run's warm-up would have run the setup) and no counter outside a counted batch."""
    from asrbench.measure import counters

    counter = OpCounter()
    with torch.inference_mode(), counter:
        with decoder_setup():
            torch.ones(8) * 2
    assert sum(counter.counts["other"].values()) == 2 and counter.peak == 64
    counters._COUNTING.append(counter)
    try:
        with torch.inference_mode(), counter:
            with decoder_setup():
                torch.ones(8) * 2
            torch.ones(4) * 3
    finally:
        counters._COUNTING.remove(counter)
    assert sum(counter.counts["other"].values()) == 4  # the setup's 2 ops were not counted
    assert counter.peak == 64 and counter.allocated["other"] == 64 + 32


def test_a_device_that_cannot_tell_is_refused_not_guessed():
    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    module = Plain()
    graphing.install(module, module.forward, module.forward)  # no would_capture
    assert not graphing.predicts(module)
    with graphing.capturing_calls(), pytest.raises(RuntimeError, match="cannot tell"):
        module(torch.ones(1))


CHILD = r"""
import json, sys
from asrbench.devices import hpu_emulated
from asrbench.measure import decoding
mode, out = sys.argv[1], sys.argv[2]
if mode == "eager":  # the warm-up-then-eager-count path
    hpu_emulated.EmulatedHPUDevice.capture_while_counting = False
calls = []
forward = decoding._Encode.forward
def counted(self, features):
    calls.append(1)
    return forward(self, features)
decoding._Encode.forward = counted
from asrbench.cli.main import main
code = main(sys.argv[3:])
json.dump({"code": code, "encoder_forwards": len(calls)}, open(out, "w"))
"""


@pytest.mark.skipif(not EmulatedHPUDevice.is_available(),
                    reason=EmulatedHPUDevice.unavailable_reason())
@pytest.mark.parametrize("clips, warmup, warmup_batches", [
    (3, [], (0, 1)),
    (5, ["--warmup-batches", "2"], (1, 2)),
], ids=["default-warmup", "warmup-batches-2-of-3"])
def test_a_counters_only_emulated_run_decodes_each_counted_batch_once_and_counts_the_same(
        tmp_path, tiny_whisper, clips, warmup, warmup_batches):
    """Batches of 2; the first batch and the partial last batch are counted. The encoder's
    Python runs once per counted batch (a replay runs none): 2 forwards, where the
    warm-up-then-eager path ran 3.

    default-warmup: 3 clips, the warm-up would have decoded the first batch, which is counted
    while capturing instead. warmup-batches-2-of-3: 5 clips, a warm-up of 2 batches; the first
    is counted while capturing, the second (not counted: it has the first's shape) is then
    decoded as the warm-up, replaying; the partial last batch is counted eagerly."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    results = {}
    for mode in ("capture", "eager"):
        report, out = tmp_path / f"{mode}.json", tmp_path / f"{mode}.out.json"
        proc = subprocess.run(
            [sys.executable, str(script), mode, str(out), "run", "--device", "hpu-emulated",
             "--graphs", "--model", str(tiny_whisper), "--dataset-config", "en", "--language",
             "english", "--limit", str(clips), "--batch-size", "2", "--generation-max-length",
             "12", "--reference-utterances", "0", "--counters-only", *warmup, "--no-progress",
             "--report", str(report)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        child = json.loads(out.read_text())
        assert child["code"] == 0
        results[mode] = (child["encoder_forwards"],
                         json.loads(report.read_text())["runs"][0])
    (once, run), (twice, eager) = results["capture"], results["eager"]
    assert (once, twice) == (2, 3)
    assert run["counters"]["batches"] and run["counters"]["captures"]
    unstable = ("seconds", "first_calls")
    # counted while capturing: the first calls; after a warm-up: not
    assert (run["counters"]["first_calls"], eager["counters"]["first_calls"]) == (True, False)
    assert {k: v for k, v in run["counters"].items() if k not in unstable} == \
        {k: v for k, v in eager["counters"].items() if k not in unstable}
    assert [(u["id"], u["prediction"], u["tokens"]) for u in run["utterances"]] == \
        [(u["id"], u["prediction"], u["tokens"]) for u in eager["utterances"]]
    assert len(run["utterances"]) == clips
    assert (run["timings"]["warmup_batches"],
            eager["timings"]["warmup_batches"]) == warmup_batches


RECAPTURE_CHILD = r"""
import json, sys
from asrbench.devices import hpu_emulated
from asrbench.measure import decoding
mode, regression, out = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "eager":  # a device that cannot tell which call captures: warm-up, eager count
    hpu_emulated.EmulatedHPUDevice.capture_while_counting = False
if regression != "none":
    call = decoding.StaticGreedyDecoder.__call__
    def recapturing(self, features):
        # the encoder's graph is dropped before every batch ("every") or before the partial
        # last one ("last": its dummy rows are copies of its last clip)
        if regression == "every" or bool((features[-1] == features[-2]).all()):
            self.encode.clear_cache()
        return call(self, features)
    decoding.StaticGreedyDecoder.__call__ = recapturing
from asrbench.cli.main import main
code = main(sys.argv[4:])
json.dump({"code": code}, open(out, "w"))
"""


@pytest.mark.skipif(not EmulatedHPUDevice.is_available(),
                    reason=EmulatedHPUDevice.unavailable_reason())
@pytest.mark.parametrize("mode", ["capture", "eager"])
def test_a_recapture_after_the_first_batch_is_counted_by_a_counters_only_run(
        tmp_path, tiny_whisper, mode):
    """Two batches of 2 (3 clips: the second is the partial last batch, padded with a dummy
    row) are both counted batches. Main's counters-only run sent neither through the graph
    wrappers after the first batch's capture, so a graph dropped and captured again before
    every batch, or before the partial last batch only, counted the same compilations as a
    clean run and passed the gate (a timed run: 3 -> 5). Now the second batch goes through
    the wrappers once, counted while capturing (the emulated Gaudi) or decoded again after
    the eager count (a device that cannot tell)."""
    script = tmp_path / "child.py"
    script.write_text(RECAPTURE_CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    compilations = {}
    for regression in ("none", "every", "last"):
        report, out = tmp_path / f"{regression}.json", tmp_path / f"{regression}.out.json"
        proc = subprocess.run(
            [sys.executable, str(script), mode, regression, str(out), "run", "--device",
             "hpu-emulated", "--graphs", "--model", str(tiny_whisper), "--dataset-config", "en",
             "--language", "english", "--limit", "3", "--batch-size", "2",
             "--generation-max-length", "12", "--reference-utterances", "0", "--counters-only",
             "--no-progress", "--report", str(report)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = json.loads(report.read_text())["runs"][0]
        assert len(run["counters"]["batches"]) == 1  # both batches counted
        compilations[regression] = (run["counters"]["compilations"], run["counters"]["captures"])
    (clean, clean_captures) = compilations["none"]
    for regression in ("every", "last"):
        count, captures = compilations[regression]
        assert count > clean, (regression, compilations)
        assert sum(captures.values()) > sum(clean_captures.values()), (regression, compilations)

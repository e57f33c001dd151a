"""The garbage collector in asrbench's processes (asrbench/processes.py): an `asrbench run`
process of its own starts without automatic collections until its model is loaded, exits
without collecting over everything torch and transformers made, and every timed pass (both
doors) walks only what the pass makes. A caller's process (pytest, a test calling main()) is
never left with its collector off."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from asrbench import processes
from asrbench.cli.main import main
from asrbench.config.settings import BenchConfig


@pytest.fixture
def collector_restored():
    """Whatever a test does to the collector, the session gets it back as it was."""
    enabled = gc.isenabled()
    yield
    processes._HELD.clear()
    processes._START_UP_FROZEN.clear()
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_hold_then_release_turns_the_collector_off_and_on(collector_restored):
    processes.hold_collections()
    assert not gc.isenabled()
    processes.hold_collections()  # a second hold is the same hold
    processes.release_collections()
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    assert frozen > 0  # start-up's objects: out of every later collection
    processes.release_collections()  # nothing held: nothing happens
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_settled_heap_after_start_up_was_frozen_leaves_the_heap_without_counting_it(
        collector_restored, monkeypatch):
    """In asrbench's own run process start-up's heap stays frozen until exit: every pass's
    settled_heap then leaves it as it is without counting the frozen objects (a walk over a
    few hundred thousand of them per pass)."""
    processes.hold_collections()
    processes.release_collections()
    frozen = gc.get_freeze_count()

    def walks() -> int:
        raise AssertionError("counted the frozen heap")

    monkeypatch.setattr(gc, "get_freeze_count", walks)
    with processes.settled_heap():
        pass
    monkeypatch.undo()
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # still frozen: until exit


def test_release_never_turns_on_a_collector_the_caller_turned_off(collector_restored):
    gc.disable()
    processes.hold_collections()  # already off: not held by asrbench
    processes.release_collections()
    assert not gc.isenabled()


def test_a_settled_heap_freezes_what_lives_and_gives_it_back(collector_restored):
    alive = [[index] for index in range(1000)]  # tracked containers alive before the pass
    with processes.settled_heap():
        assert gc.get_freeze_count() >= len(alive)
        frozen = gc.get_freeze_count()
    assert gc.get_freeze_count() == 0
    assert frozen >= len(alive)


def test_a_settled_heap_leaves_the_callers_own_freeze_alone(collector_restored):
    gc.freeze()
    before = gc.get_freeze_count()
    with processes.settled_heap():
        pass
    assert gc.get_freeze_count() == before


def test_a_timed_pass_runs_on_a_settled_heap(monkeypatch):
    """engine._pass wraps its decodes in settled_heap (both doors go through it)."""
    from asrbench.measure import engine

    entered = []

    class Spy:
        def __enter__(self):
            entered.append(gc.get_freeze_count())

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(engine, "settled_heap", Spy)

    class Device:
        torch_device = "cpu"

        def synchronize(self):
            pass

        def compile_count(self):
            return None

    evaluator = engine.Evaluator.__new__(engine.Evaluator)
    evaluator.device = Device()
    evaluator.decoder = object()
    evaluator.progress = None
    result = evaluator._pass(iter(()), "pass 1/1")
    assert entered and result.sequences == []


def test_main_in_a_callers_process_never_holds_the_collector(tmp_path, capsys,
                                                             collector_restored):
    assert gc.isenabled()
    code = main(["run", "--model", str(tmp_path / "no-such-model"), "--report",
                 str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2
    assert gc.isenabled()


def test_main_in_its_own_process_holds_until_the_model_loads(tmp_path, capsys,
                                                             collector_restored):
    code = main(["run", "--model", str(tmp_path / "no-such-model"), "--report",
                 str(tmp_path / "r.json"), "--no-progress"], own_process=True)
    assert code == 2  # refused before any model loaded: still held
    assert not gc.isenabled()


def test_loading_a_model_releases_the_collector(tiny_whisper, collector_restored):
    from asrbench.measure.session import Session

    processes.hold_collections()
    Session(progress=False).model(BenchConfig(model=str(tiny_whisper), device="cpu"))
    assert gc.isenabled()


def test_the_entry_point_exits_with_mains_code_and_a_frozen_heap(tmp_path):
    """entry(): main()'s exit status; exit handlers still run, over a frozen heap."""
    script = textwrap.dedent(f"""
        import atexit, gc, sys
        from asrbench.cli import main
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
        sys.argv = ["asrbench", "compare", "--report", {str(tmp_path / "none.json")!r}]
        main.entry()
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "frozen at exit: True" in done.stdout
    assert done.stderr.startswith("asrbench: error:") and done.stderr.count("\n") == 1

"""glibc's allocator in measuring processes (asrbench/processes.py keep_freed_memory): every
Session, in either door, has the memory a decode frees kept for the next one, unless the user
chose the allocator's behaviour; every report says which it was."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from asrbench import processes
from asrbench.formats.environment import environment


@pytest.fixture
def fresh_policy(monkeypatch):
    """keep_freed_memory() runs once per process: each test starts as if it had not run, and
    the process's own record is put back afterwards."""
    monkeypatch.setattr(processes, "_ALLOCATOR", [])


class Mallopt:
    """A stand-in for glibc's mallopt: records its calls, answers `answer`."""

    def __init__(self, answer: int = 1) -> None:
        self.answer = answer
        self.calls: list[tuple[int, int]] = []

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.answer


def test_the_thresholds_are_fixed_once_per_process(fresh_policy):
    mallopt = Mallopt()
    policy = processes.keep_freed_memory(environ={}, mallopt=mallopt)
    assert mallopt.calls == list(processes.KEPT_FREED_MEMORY)
    assert dict(mallopt.calls)[processes.M_MMAP_THRESHOLD] == 32 << 20
    assert "freed memory kept" in policy
    again = Mallopt()
    assert processes.keep_freed_memory(environ={}, mallopt=again) == policy
    assert again.calls == []  # a second Session changes nothing
    assert processes.allocator_policy() == policy
    assert environment()["allocator"] == policy  # what every report records


@pytest.mark.parametrize("environ", [
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"MALLOC_MMAP_THRESHOLD_": "65536"},
    {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
])
def test_the_users_choice_is_left_alone(fresh_policy, environ):
    mallopt = Mallopt()
    policy = processes.keep_freed_memory(environ=environ, mallopt=mallopt)
    assert mallopt.calls == []
    assert policy == f"as the environment sets it ({next(iter(environ))})"


def test_unrelated_preloads_and_tunables_do_not_count_as_a_choice(fresh_policy):
    mallopt = Mallopt()
    processes.keep_freed_memory(environ={"LD_PRELOAD": "libfakeroot.so",
                                         "GLIBC_TUNABLES": "glibc.pthread.rseq=0"},
                                mallopt=mallopt)
    assert mallopt.calls == list(processes.KEPT_FREED_MEMORY)


def test_a_refused_setting_is_said(fresh_policy):
    assert "mallopt refused" in processes.keep_freed_memory(environ={}, mallopt=Mallopt(0))


def test_no_glibc_means_the_default(fresh_policy, monkeypatch):
    monkeypatch.setattr(processes, "_mallopt", lambda: None)
    assert processes.keep_freed_memory(environ={}) == (
        "the C library's default (no glibc mallopt here)")
    assert processes.allocator_policy() is not None


def test_every_session_asks_for_it(fresh_policy):
    from asrbench.measure.session import Session

    assert processes.allocator_policy() is None
    Session(progress=False)
    assert processes.allocator_policy() is not None


# Freeing and allocating the same memory again, as pass after pass of a decode does: eight
# 6 MiB blocks at once, five rounds. By default glibc serves the first round with mmap, then
# raises its thresholds to the block size and from then on gives the heap's free top back to
# the system after each round, so the kernel zero-fills and maps every page again (about 4,000
# minor faults a round here). Kept, only the first round faults.
ROUNDS = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    if sys.argv[1] == "keep":
        from asrbench.processes import keep_freed_memory
        keep_freed_memory()
    faults = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [np.ones(6 << 20, dtype=np.uint8) for _ in range(8)]
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps(faults))
    """)


def _faults_per_round(mode: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return [int(n) for n in done.stdout.strip().strip("[]").split(",")]


@pytest.mark.skipif(processes._mallopt() is None, reason="glibc's mallopt only (not Linux/glibc)")
def test_memory_freed_by_one_round_serves_the_next_without_page_faults():
    kept, default = _faults_per_round("keep"), _faults_per_round("default")
    pages = (8 * (6 << 20)) // 4096
    assert sum(default[1:]) > pages // 8, default  # the control: glibc gives it back each round
    assert sum(kept[1:]) < sum(default[1:]) // 20, (kept, default)

"""How much of the machine a run got while its timed passes ran (docs/gate.md, "How throughput
bands and contention are decided").

A busy machine makes a run slower without anything in the code changing: the run's threads wait
for a core. Around the timed passes this module reads
- the process's own CPU time (user + system of all its threads, children excluded: the
  DataLoader workers have finished by then) and the wall time, so the share of its threads' CPU
  the run got is cpu / (wall x threads);
- the time its threads were runnable but waiting for a CPU (/proc/self/task/*/schedstat),
  where the kernel keeps it: what the run wanted and did not get;
- the 1-minute load average (/proc/loadavg) at the end and the share of the machine's CPU time
  stolen by the hypervisor (/proc/stat's steal column), where the OS gives them (Linux).

Measurement only: what counts as starved is the gate's rule (gate/compare.py, STARVED_SHARE).
No torch here: the engine passes the number of threads the run used.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from asrbench.formats.model import Contention

PROC = Path("/proc")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process's threads, children excluded
    (CLOCK_PROCESS_CPUTIME_ID: the scheduler's own count, not ticks)."""
    return time.process_time()


def _proc_stat(root: Path) -> list[int] | None:
    """The machine's aggregate CPU jiffies (/proc/stat's first line), or None off Linux."""
    try:
        first = (root / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    try:
        return [int(v) for v in first[1:]]
    except ValueError:
        return None


def _runqueue_wait(root: Path) -> float | None:
    """Seconds this process's threads spent runnable but waiting for a CPU (the second column
    of /proc/self/task/*/schedstat, in ns), or None where the kernel does not say."""
    total, seen = 0, False
    for path in (root / "self" / "task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9 if seen else None


def _load_average(root: Path) -> float | None:
    try:
        return float((root / "loadavg").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the machine's CPU time stolen between two /proc/stat readings (the 8th
    column, steal; guest time is already inside user), or None where it is not known."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    # user nice system idle iowait irq softirq steal (guest, guest_nice are inside user/nice)
    deltas = [b - a for a, b in zip(before[:8], after[:8])]
    total = sum(deltas)
    if total <= 0:
        return None
    return max(0.0, deltas[7] / total)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS says it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ContentionMeter:
    """Start before the timed passes, `stop()` after them; `threads` is what the run's compute
    used (torch's intra-op threads on the CPU; 1, the host thread, on an accelerator)."""

    def __init__(self, threads: int, threads_of: str, root: Path = PROC) -> None:
        self.threads = max(1, int(threads))
        self.threads_of = threads_of
        self.root = root
        self._stat = _proc_stat(root)
        self._wait = _runqueue_wait(root)
        self._cpu = _cpu_seconds()
        self._wall = time.perf_counter()

    def stop(self) -> Contention:
        wall = time.perf_counter() - self._wall
        cpu = _cpu_seconds() - self._cpu
        wait_now = _runqueue_wait(self.root)
        waited = None if wait_now is None or self._wait is None else max(0.0, wait_now - self._wait)
        return Contention(cpu_seconds=max(0.0, cpu), wall_seconds=max(wall, 0.0),
                          wait_seconds=waited, threads=self.threads, threads_of=self.threads_of,
                          cpus=available_cpus(), load_average_1m=_load_average(self.root),
                          steal_share=steal_share(self._stat, _proc_stat(self.root)))

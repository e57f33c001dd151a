"""Child processes ended the way they can clean up: each child runs in a process group of its
own, and ending it is SIGTERM to that whole group first (the child's handlers write what they
have, remove their temporary files, end their own children), SIGKILL only after a grace period.

A child also gets SIGTERM should this process die without ending it (SIGKILL, a crash): the
Linux parent-death signal, set in the child before it runs. DataLoader workers get SIGKILL that
way (`die_with_parent`): they hold nothing to clean up, and a worker left behind waits forever.

Nothing here imports anything of asrbench's: the A/B, bisect and the measurement all use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: seconds a child has to end after SIGTERM before SIGKILL
GRACE_SECONDS = 15.0
#: prctl(2) option: the signal the calling process gets when its parent thread dies
PR_SET_PDEATHSIG = 1


#: whether hold_collections() turned the collector off (release_collections() turns it back on)
_HELD: list[bool] = []
#: release_collections() froze start-up's heap in this process (frozen until exit): settled_heap
#: then need not count the frozen objects (gc.get_freeze_count walks them all: 0.03 s each)
_START_UP_FROZEN: list[bool] = []

_PRCTL: list[Any] = []  # libc's prctl, looked up once (never between fork and exec)


def _prctl() -> Any:
    if not _PRCTL:
        function = None
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                function = None
        _PRCTL.append(function)
    return _PRCTL[0]


def set_parent_death_signal(number: int = signal.SIGTERM, prctl: Any = None) -> bool:
    """Ask Linux to send `number` to this process when its parent dies (prctl
    PR_SET_PDEATHSIG, through ctypes); False where that is not available."""
    prctl = prctl or _prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(number), 0, 0, 0) == 0


def die_with_parent(parent: int, number: int = signal.SIGKILL) -> None:
    """In a child: end with `number` when the parent dies; if it already died (it went between
    the fork and this call), end now."""
    set_parent_death_signal(number)
    if os.getppid() != parent:
        os._exit(1)


def _child_setup(parent: int) -> Callable[[], None]:
    prctl = _prctl()  # looked up here, in the parent: the child only calls it

    def setup() -> None:  # runs in the child between fork and exec: no locks, no imports
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def start(argv: Any, **options: Any) -> subprocess.Popen:
    """subprocess.Popen in a new session (its own process group: Ctrl-C at the terminal
    reaches this process only, which ends the child with `end`), with SIGTERM as its
    parent-death signal."""
    if os.name == "posix":
        options.setdefault("start_new_session", True)
        options.setdefault("preexec_fn", _child_setup(os.getpid()))
    return subprocess.Popen(argv, **options)


def _group_alive(process: subprocess.Popen) -> bool:
    if os.name != "posix":
        return False
    try:
        os.killpg(process.pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)
    except (ProcessLookupError, PermissionError):
        pass


def end(process: subprocess.Popen, grace: float | None = None) -> int | None:
    """End a child started with `start` and everything in its process group: SIGTERM, then
    SIGKILL after `grace` seconds (GRACE_SECONDS) if the child has not ended; the group is
    sent SIGKILL at the end either way, so no grandchild outlives it. Its exit status."""
    return end_all([process], grace)[0]


def end_all(processes: Sequence[subprocess.Popen], grace: float | None = None) -> list[Any]:
    """`end` for several children at once: SIGTERM to every group, one grace period for
    all, then SIGKILL to every group. Their exit statuses."""
    grace = GRACE_SECONDS if grace is None else grace
    running = [p for p in processes if p.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # the leader ended: its group's other members (a step's measurement, still writing
        # its partial report) get the rest of the grace period too
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.05)
    for process in processes:
        _signal_group(process, signal.SIGKILL)  # what is left of the group (ignored SIGTERM)
    return [process.wait() for process in processes]


def run(argv: Any, timeout: float | None = None, grace: float | None = None,
        input: str | None = None, **options: Any) -> subprocess.CompletedProcess:
    """subprocess.run, but in a process group of its own, and ended with `end` (SIGTERM to
    the group, SIGKILL after a grace period) on a timeout or any exception here (an
    interruption) instead of SIGKILL to the child alone."""
    capture = options.pop("capture_output", False)
    if capture:
        options["stdout"] = options["stderr"] = subprocess.PIPE
    process = start(argv, **options)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        end(process, grace)
        out, err = process.communicate()
        raise subprocess.TimeoutExpired(argv, timeout or 0, out, err) from None
    except BaseException:
        end(process, grace)
        raise
    finally:
        if process.poll() is not None:
            _signal_group(process, signal.SIGKILL)  # a grandchild left in the group
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


class Ended(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (raised in the main thread by `raise_on`)."""

    def __init__(self, number: int) -> None:
        self.signal_name = signal.Signals(number).name
        self.code = 128 + number
        super().__init__(self.signal_name)


def raise_on(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
             exception: Callable[[int], BaseException] = Ended) -> dict[int, Any]:
    """Signals raise `exception(number)` in the main thread; the old handlers. A signal this
    process was started ignoring stays ignored: `nohup asrbench run &` goes on after the
    terminal closes, as a shell's background job ignores SIGINT."""
    def handler(number: int, frame: Any) -> None:
        raise exception(number)

    previous = {}
    for number in signals:
        try:
            if signal.getsignal(number) == signal.SIG_IGN:
                continue
            previous[number] = signal.signal(number, handler)
        except (ValueError, OSError):  # not the main thread, or no such signal here
            pass
    return previous


@contextlib.contextmanager
def signals_held(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
    """Cleanup that must finish: these signals wait (blocked) until the block ends, then
    arrive as usual."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def restore(previous: dict[int, Any]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


def wait_gone(pid: int, seconds: float = 60.0) -> bool:
    """Whether process `pid` is gone (or a zombie) within `seconds` (for tests and cleanup)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- the garbage collector in asrbench's own measuring processes -----------------------------


def hold_collections() -> None:
    """No automatic garbage collection until release_collections(): for the start-up of an
    `asrbench run` process of asrbench's own (cli.main.entry), never inside a caller's process
    (the pytest plugin, tests calling cli.main.main). Importing torch and transformers makes a
    few hundred thousand objects, and the collector walks all of them again and again as they
    grow (six full collections, about 0.5 s of a 9 s counters-only run on a quiet 2-core
    machine); almost none of them is garbage."""
    if gc.isenabled() and not _HELD:
        gc.disable()
        _HELD.append(True)


def release_collections() -> None:
    """Collect as usual from here on (the model is loaded: the imports are done), with every
    object start-up made (modules, classes, the weights: alive until exit) in the collector's
    permanent generation: else the first collection after a held start-up walks all of them
    at once (0.3 s on a quiet 2-core machine). Nothing where hold_collections() was not
    called."""
    if _HELD:
        _HELD.clear()
        gc.freeze()
        _START_UP_FROZEN.append(True)
        gc.enable()


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """While a pass is timed: every object alive when it starts (modules, classes, the
    weights, whatever the calling process holds: a pytest session's whole heap) sits in the
    collector's permanent generation, so the automatic collections the pass triggers walk only
    what the pass itself makes. Otherwise a pass pays for walking the host process's heap (in
    a counters-only CPU run of 4 clips, about 0.5 s of a 3.5 s plain decode), and that cost
    differs between the CLI and a pytest session. Unfrozen afterwards, so nothing is kept from
    later collections; left alone where objects are frozen already: by the caller itself, or
    by release_collections() in asrbench's own run process (its start-up heap stays frozen)."""
    if _START_UP_FROZEN or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# -- the C library's allocator in asrbench's measuring processes -----------------------------

#: mallopt(3) parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: what keep_freed_memory() sets: blocks up to 32 MiB (the largest mmap threshold glibc takes
#: on 64-bit) come from the heap, free memory at the heap's top goes back to the system only
#: beyond 2 GiB, and the heap grows 64 MiB at a time
KEPT_FREED_MEMORY = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, (1 << 31) - 1),
                     (M_TOP_PAD, 64 << 20))
#: environment variables by which a user chooses the allocator's behaviour (GLIBC_TUNABLES and
#: LD_PRELOAD where they name malloc: glibc.malloc.* tunables, jemalloc, tcmalloc, mimalloc):
#: asrbench then leaves it as they set it
ALLOCATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                       "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES", "LD_PRELOAD")

#: what keep_freed_memory() did in this process (one line; empty: not called yet)
_ALLOCATOR: list[str] = []


def keep_freed_memory(environ: Any = None, mallopt: Any = None) -> str:
    """Have glibc's allocator keep the memory a decode frees for the next one, once per
    process; a line saying what was done (also `allocator_policy()`, recorded in every
    report's environment). Called by every measuring session (measure.session.Session: the
    CLI and the pytest plugin alike), so both doors time the same allocator.

    Why: by default glibc serves a block of 128 KiB or more with its own mmap, and returns
    free memory at the top of its heap to the system once 128 KiB lie there; both thresholds
    then move with what the process happened to free first. A decode allocates and frees the
    same few hundred MiB of activations step after step, so whether a pass pays the kernel's
    page faults for them again depended on the process's history: 0, 24,000 or 279,000 a timed
    pass of 4 clips between processes of one script (docs/performance.md). Fixed thresholds
    make every pass after the first fault-free. PyTorch's CPU launcher asks the same of
    jemalloc (torch.backends.xeon.run_cpu: freed pages are not given back). Freed memory stays
    the process's until it exits.

    Left as it is where the user chose (ALLOCATOR_VARIABLES set: their thresholds, tunables,
    or another allocator preloaded) and where there is no glibc mallopt (not Linux, another C
    library)."""
    if _ALLOCATOR:
        return _ALLOCATOR[0]
    environ = os.environ if environ is None else environ
    chosen = [name for name in ALLOCATOR_VARIABLES if environ.get(name) and (
        name not in ("GLIBC_TUNABLES", "LD_PRELOAD") or "malloc" in environ[name])]
    if chosen:
        policy = f"as the environment sets it ({', '.join(chosen)})"
    else:
        mallopt = mallopt or _mallopt()
        if mallopt is None:
            policy = "the C library's default (no glibc mallopt here)"
        elif all(mallopt(parameter, value) == 1 for parameter, value in KEPT_FREED_MEMORY):
            policy = ("glibc, freed memory kept: M_MMAP_THRESHOLD 32 MiB, "
                      "M_TRIM_THRESHOLD 2 GiB, M_TOP_PAD 64 MiB")
        else:
            policy = "glibc, partly the default (mallopt refused a setting)"
    _ALLOCATOR.append(policy)
    return policy


def allocator_policy() -> str | None:
    """What keep_freed_memory() did in this process; None before it ran (no measurement)."""
    return _ALLOCATOR[0] if _ALLOCATOR else None


def _mallopt() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    if not _is_glibc():
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def _is_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False

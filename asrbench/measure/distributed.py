"""Data-parallel evaluation with torch.distributed: launch, shards, collectives, merging.

One process per device ("rank"), started by torchrun (which sets RANK, WORLD_SIZE,
LOCAL_RANK) or by optimum-habana's gaudi_spawn.py --use_mpi (mpirun: OMPI_COMM_WORLD_RANK,
OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK; gaudi_spawn exports MASTER_ADDR/PORT).
Each rank evaluates one contiguous shard of the split with the unchanged engine; the ranks
meet at a barrier before every pass so the passes start together; the shards' results are
gathered and merged in split order, and rank 0 writes the one report. The process group uses
the device's backend (hccl, nccl, gloo); per-utterance results travel over a gloo group.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from asrbench import processes
from asrbench.config.settings import config_toml  # the TOML form of a config
from asrbench.errors import AsrbenchError, first_line
from asrbench.formats.io import load_report

if TYPE_CHECKING:  # pragma: no cover
    from asrbench.config.settings import BenchConfig
    from asrbench.devices import Device
    from asrbench.formats.model import Run

TIMEOUT_ENV = "ASRBENCH_DIST_TIMEOUT"
# Bounds every wait on another rank: rendezvous, the barrier before each pass, the gather.
# A real pass on a big split can take minutes, so it is generous; tests set it low.
DEFAULT_TIMEOUT_SECONDS = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class Launch:
    """Where this process sits in the job, as its launcher described it."""

    rank: int = 0  # global rank
    world_size: int = 1  # processes in the job
    local_rank: int = 0  # rank on this host: picks the GPU / Gaudi card
    local_world_size: int = 1  # processes on this host (CPU threads are shared among them)
    launcher: str = "none"  # torchrun | mpirun | none

    @property
    def label(self) -> str:
        """'rank 1 of 2' (for messages)."""
        return f"rank {self.rank} of {self.world_size}"


def _int_var(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise AsrbenchError(f"{name} is not set (a launcher that sets the rank variables "
                                "must set it too)")
        return default
    try:
        return int(value)
    except ValueError:
        raise AsrbenchError(f"{name}={value!r} is not an integer") from None


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch:
    """Read rank and world size from torchrun's or mpirun's environment (none: one process)."""
    env = os.environ if environ is None else environ
    if "RANK" in env or "WORLD_SIZE" in env:  # torchrun, or anything else using env://
        world = _int_var(env, "WORLD_SIZE")
        launch = Launch(_int_var(env, "RANK"), world, _int_var(env, "LOCAL_RANK", 0),
                        _int_var(env, "LOCAL_WORLD_SIZE", world), "torchrun")
    elif "OMPI_COMM_WORLD_RANK" in env:  # mpirun (gaudi_spawn.py --use_mpi)
        world = _int_var(env, "OMPI_COMM_WORLD_SIZE")
        launch = Launch(_int_var(env, "OMPI_COMM_WORLD_RANK"), world,
                        _int_var(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0),
                        _int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE", world), "mpirun")
    else:
        return Launch()
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise AsrbenchError(f"inconsistent launch environment: rank {launch.rank}, world size "
                            f"{launch.world_size}")
    return launch


def shard(count: int, world_size: int, rank: int) -> range:
    """Indices of rank's contiguous shard of `count` items: sizes differ by at most one, the
    first `count % world_size` ranks take one more, and the shards in rank order are 0..count-1."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


# -- scheduler shards (`asrbench run --shard I/N`) ----------------------------------------------

@dataclass(frozen=True)
class ShardSpec:
    """One scheduler shard of a split: `index` of `count` (0-based), and where that came from."""

    index: int
    count: int
    source: str = "--shard"

    @property
    def label(self) -> str:
        """'shard 1/4' (0-based index, as given)."""
        return f"shard {self.index}/{self.count}"


def _shard_number(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise AsrbenchError(f"{name}={value!r} is not an integer") from None


def _checked(index: int, count: int, source: str) -> ShardSpec:
    if count < 1:
        raise AsrbenchError(f"{source}: the shard count must be >= 1, got {count}")
    if not 0 <= index < count:
        raise AsrbenchError(f"{source}: shard index {index} is outside 0..{count - 1} "
                            "(indices are 0-based)")
    return ShardSpec(index, count, source)


def parse_shard(text: str, count: int | None = None,
                environ: Mapping[str, str] | None = None) -> ShardSpec:
    """`--shard I/N` (0-based I), or `--shard auto`: the scheduler's index and count (a Slurm
    array: SLURM_ARRAY_TASK_ID less SLURM_ARRAY_TASK_MIN, over SLURM_ARRAY_TASK_STEP where set,
    of SLURM_ARRAY_TASK_COUNT; a Kubernetes Indexed Job: JOB_COMPLETION_INDEX of `count`, from
    --shard-count or the config file's shard_count, since Kubernetes exports no count)."""
    text = text.strip()
    if text != "auto":
        index_text, slash, count_text = text.partition("/")
        if not slash:
            raise AsrbenchError(f"--shard {text!r}: expected I/N (e.g. 0/4) or auto")
        try:
            spec = _checked(int(index_text), int(count_text), f"--shard {text}")
        except ValueError:
            raise AsrbenchError(f"--shard {text!r}: expected I/N with integers (e.g. 0/4)"
                                ) from None
        if count is not None and count != spec.count:
            raise AsrbenchError(f"--shard {text} says {spec.count} shards but --shard-count "
                                f"(or the config's shard_count) says {count}")
        return spec
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" in env:
        task = _shard_number("SLURM_ARRAY_TASK_ID", env["SLURM_ARRAY_TASK_ID"])
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise AsrbenchError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not "
                                "(a Slurm array sets both)")
        total = _shard_number("SLURM_ARRAY_TASK_COUNT", env["SLURM_ARRAY_TASK_COUNT"])
        first = _shard_number("SLURM_ARRAY_TASK_MIN", env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = _shard_number("SLURM_ARRAY_TASK_STEP", env.get("SLURM_ARRAY_TASK_STEP", "1"))
        if step < 1 or (task - first) % step:
            raise AsrbenchError(f"SLURM_ARRAY_TASK_ID={task} is not on the array's grid "
                                f"(min {first}, step {step})")
        source = (f"Slurm array: SLURM_ARRAY_TASK_ID={task} - SLURM_ARRAY_TASK_MIN={first}"
                  + (f", step {step}" if step != 1 else "")
                  + f", of SLURM_ARRAY_TASK_COUNT={total}")
        spec = _checked((task - first) // step, total, source)
        if count is not None and count != total:
            raise AsrbenchError(f"SLURM_ARRAY_TASK_COUNT={total} but --shard-count (or the "
                                f"config's shard_count) says {count}")
        return spec
    if "JOB_COMPLETION_INDEX" in env:
        index = _shard_number("JOB_COMPLETION_INDEX", env["JOB_COMPLETION_INDEX"])
        if count is None:
            raise AsrbenchError("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but "
                                "Kubernetes exports no shard count: give --shard-count N (the "
                                "Job's completions) or shard_count = N in the config file")
        return _checked(index, count, f"Kubernetes Indexed Job: JOB_COMPLETION_INDEX={index}, "
                                      f"of {count} (--shard-count or the config)")
    raise AsrbenchError("--shard auto: no scheduler index found (neither SLURM_ARRAY_TASK_ID, "
                        "a Slurm array's, nor JOB_COMPLETION_INDEX, a Kubernetes Indexed Job's)"
                        ": give --shard I/N")


def split_fingerprint(ids: list[str]) -> str:
    """sha256 over a split's usable ids in id order (not file order): every shard of one split
    computes the same value, and the merge refuses shards whose values differ."""
    digest = hashlib.sha256()
    for utterance in sorted(ids):
        digest.update(utterance.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def _id_key(utterance: str) -> bytes:
    return hashlib.sha256(utterance.encode("utf-8", "surrogatepass")).digest()


def shard_members(ids: list[str], spec: ShardSpec) -> set[str]:
    """The ids of one scheduler shard: the split's ids ordered by their sha256, cut into
    spec.count contiguous parts by shard() (the ranks' function), whose sizes differ by at most
    one. An utterance's shard depends on its id and the split's set of ids (its fingerprint),
    never on the file's row order or the machine."""
    ordered = sorted(ids, key=lambda u: (_id_key(u), u))
    return set(ordered[i] for i in shard(len(ordered), spec.count, spec.index))


def cpu_threads(launch: Launch, environ: Mapping[str, str] | None = None,
                available: int | None = None, total: int | None = None) -> int:
    """Intra-op threads for one rank: OMP_NUM_THREADS if set (torchrun sets 1 for several
    processes); else the cores the launcher bound us to; else this host's cores shared out."""
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS", "").strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return int(env["OMP_NUM_THREADS"])
    total = total or os.cpu_count() or 1
    if available is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    if available < total:  # bound to some cores (mpirun --bind-to core): use exactly those
        return max(1, available)
    return max(1, total // max(1, launch.local_world_size))


class World:
    """This process's rank in a data-parallel run and the few collectives the runner uses.

    With one process (no launcher) it holds no process group and every collective is trivial.
    """

    def __init__(self, launch: Launch | None = None, timeout_s: float | None = None) -> None:
        self.launch = launch or Launch()
        self.timeout_s = float(timeout_s if timeout_s is not None else default_timeout())
        # not NaN (which no comparison refuses), not infinite and not beyond what a timedelta
        # holds: torch.distributed's init would fail on them with a traceback, at every rank
        if not (0 < self.timeout_s <= MAX_TIMEOUT_SECONDS):
            raise AsrbenchError(f"distributed timeout must be a number of seconds > 0 and at "
                                f"most {MAX_TIMEOUT_SECONDS:g} (--dist-timeout, "
                                f"${TIMEOUT_ENV}), got {self.timeout_s:g}")
        self._device: Device | None = None
        self._objects: Any = None  # process group for pickled objects (gloo)

    @classmethod
    def from_environment(cls, timeout_s: float | None = None) -> World:
        """The world this process was launched into; prepares the process for it."""
        world = cls(detect_launch(), timeout_s)
        if world.size > 1:
            world._prepare_process()
        return world

    @property
    def size(self) -> int:
        return self.launch.world_size

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints and writes the report."""
        return self.launch.rank == 0

    def _prepare_process(self) -> None:
        import torch  # noqa: PLC0415  torch: off the light paths

        if self.launch.launcher == "mpirun":
            # torch's env:// rendezvous and the device backends (LOCAL_RANK picks the card)
            # read torchrun's names; mpirun only sets its own.
            for name, value in (("RANK", self.launch.rank), ("WORLD_SIZE", self.launch.world_size),
                                ("LOCAL_RANK", self.launch.local_rank),
                                ("LOCAL_WORLD_SIZE", self.launch.local_world_size)):
                os.environ.setdefault(name, str(value))
        missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
        if missing:
            raise AsrbenchError(f"{' and '.join(missing)} not set: torchrun and gaudi_spawn.py set "
                                "them; with plain mpirun export MASTER_ADDR=localhost "
                                "MASTER_PORT=29500")
        # Ranks on one host share its cores; oversubscribed threads make every rank slower.
        torch.set_num_threads(cpu_threads(self.launch))

    def configs(self, configs: list[BenchConfig]) -> list[BenchConfig]:
        """The configs with this run's world size (part of their id); a config file that asks
        for another world size than the launcher started is an error."""
        out = []
        for config in configs:
            if config.world_size not in (1, self.size):
                raise AsrbenchError(
                    f"{config.id} asks for world_size {config.world_size} but {self.size} "
                    f"process(es) were launched: use torchrun --nproc-per-node {config.world_size}")
            out.append(config.replace(world_size=self.size))
        return out

    def connect(self, device: Device) -> None:
        """Start the process group with the device's backend (once; no-op for one process)."""
        if self.size == 1 or self._device is not None:
            return
        import torch.distributed as dist  # noqa: PLC0415  torch: off the light paths

        device.setup_distributed()
        timeout = dt.timedelta(seconds=self.timeout_s)
        backend = device.distributed_backend
        try:
            dist.init_process_group(backend=backend, init_method="env://", rank=self.rank,
                                    world_size=self.size, timeout=timeout)
            self._objects = (dist.group.WORLD if backend == "gloo"
                             else dist.new_group(backend="gloo", timeout=timeout))
        except (RuntimeError, ValueError) as exc:
            raise AsrbenchError(f"could not start the {backend} process group within "
                                f"{self.timeout_s:g} s (did every rank start?): {first_line(exc)}"
                                ) from None
        self._device = device

    def _collective(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except RuntimeError as exc:  # gloo/nccl/hccl errors and timeouts (DistBackendError)
            raise AsrbenchError(
                f"{what} failed: another rank failed or did not arrive within {self.timeout_s:g} s "
                f"(see its error; raise the limit with --dist-timeout or ${TIMEOUT_ENV}): "
                f"{first_line(exc)}") from None

    def barrier(self) -> None:
        """Wait until every rank arrives (a one-element all-reduce on the device)."""
        if self.size == 1:
            return
        import torch  # noqa: PLC0415  torch: off the light paths
        import torch.distributed as dist  # noqa: PLC0415  torch: off the light paths

        device = self._device
        if device is None:
            raise RuntimeError("World.barrier() before connect(): a programming error")

        def meet() -> None:
            flag = torch.zeros(1, device=device.torch_device)
            dist.all_reduce(flag)
            device.synchronize()

        self._collective("barrier before a timed pass", meet)

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order (pickled, over gloo)."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist  # noqa: PLC0415  torch: off the light paths

        out: list[Any] = [None] * self.size

        def gather() -> None:
            dist.all_gather_object(out, obj, group=self._objects)

        self._collective("gathering results", gather)
        return out

    def close(self) -> None:
        """Tear the process group down (after a successful run)."""
        if self._device is None:
            return
        import torch.distributed as dist  # noqa: PLC0415  torch: off the light paths

        if dist.is_initialized():
            dist.destroy_process_group()
        self._device = None


#: the longest distributed timeout taken (a year): a larger one, inf or NaN cannot be a
#: datetime.timedelta, which torch.distributed's init takes
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0


def default_timeout() -> float:
    """Seconds from $ASRBENCH_DIST_TIMEOUT, else DEFAULT_TIMEOUT_SECONDS."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        return float(value)
    except ValueError:
        raise AsrbenchError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def merge_results(config: BenchConfig, parts: list[Run], spelling: Any = None,
                  order: Callable[[Any], int] | None = None) -> Run:
    """One run from the ranks' shard runs (in rank order): every utterance once, in split
    order, the ranks' timings merged (merge_timings), and scored from all of them (a shard's
    own scores are replaced, never combined). Skipped rows: every rank's, each once (rows
    skipped by the index appear in every part), sorted by `order` where given. The work
    counters are rank 0's: every rank counts the whole split's first batch in decoding order
    (Evaluator.run's `whole`), the batch a single process counts."""
    from asrbench.measure.engine import merge_timings, score  # noqa: PLC0415  loads numpy and torch (measure.engine)

    first = parts[0]
    timings = merge_timings([p.timings for p in parts], [len(p.utterances) for p in parts],
                            [p.device.name for p in parts])
    skipped = list({(s.id, s.reason): s for p in parts for s in p.dataset.skipped}.values())
    if order is not None:
        skipped.sort(key=order)
    merged = score(config, first.device, first.dataset.name or "", skipped,
                   [u for part in parts for u in part.utterances], timings,
                   all(bool(p.passes_identical) for p in parts), spelling)
    merged.counters = first.counters
    return merged


# -- launching a distributed run from another process (the pytest plugin) -------------------

def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m asrbench <args>`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "asrbench", *args]


def error_lines(output: str) -> list[str]:
    """The `asrbench: error: ...` lines of the ranks' output, without repeats."""
    seen: list[str] = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("asrbench: error:") and line not in seen:
            seen.append(line)
    return seen


def launch_run(config: BenchConfig, passes: int, workdir: Path,
               timeout_s: float | None = None) -> Run:
    """Run one config with torchrun on config.world_size local processes; returns its report
    entry (validated). A failed rank is an AsrbenchError quoting the ranks' error lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="config-", suffix=".toml", dir=workdir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config_toml(config, passes))
    report = Path(name).with_suffix(".json")
    command = torchrun_command(config.world_size, ["run", "--config", name, "--report",
                                                   str(report), "--no-progress"])
    try:
        # torchrun and its ranks in a process group of their own, ended SIGTERM first
        proc = processes.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AsrbenchError(f"{config.id}: torchrun did not finish within {timeout_s:g} s"
                            ) from None
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        lines = error_lines(output) or output.strip().splitlines()[-5:]
        raise AsrbenchError(f"{config.id}: torchrun --nproc-per-node {config.world_size} exited "
                            f"with status {proc.returncode}: " + " | ".join(lines))
    runs = load_report(report).runs
    if len(runs) != 1 or runs[0].config.id != config.id:
        raise AsrbenchError(f"{report}: expected one run of {config.id}, got "
                            f"{[r.config.id for r in runs]}")
    return runs[0]


def probe_device(kind: str, timeout_s: float = 300.0) -> tuple[str, str]:
    """(device class, kind) of `--device kind`, found in a short-lived child process so this
    one never holds a GPU or Gaudi card that the ranks need."""
    code = (f"import json; from asrbench.devices import get_device; d = get_device({kind!r}); "
            "print(json.dumps([d.device_class(), d.kind]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AsrbenchError(f"probing --device {kind} took over {timeout_s:g} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise AsrbenchError(f"probing --device {kind} failed: {tail[0]}")
    device_class, found = json.loads(proc.stdout.strip().splitlines()[-1])
    return device_class, found

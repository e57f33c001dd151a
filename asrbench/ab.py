"""`asrbench ab`: base against head on the same machine, interleaved, until the throughput
verdict is clear; accuracy compared exactly.

What asv continuous, Bencher's relative mode and Chromium's Pinpoint do for code, for speech
models. A side is a command that runs asrbench (default: this interpreter's `-m asrbench`;
another virtual environment's python, e.g. a checkout of the base branch) plus its own run
options, so the two sides can differ in environment or in settings.

1. Accuracy, once per side, on the whole split: WER, CER and every transcript, compared
   exactly (no tolerance: the same split through the same code gives the same text).
2. Throughput, in rounds: each round measures both sides once, back to back in a random order
   (the order is recorded). `--mode processes` (default) runs a fresh `asrbench run` process
   per side per round, so the noise between processes is sampled, and only one process holds
   the device at a time (a Gaudi card takes one). `--mode workers` keeps one long-lived worker
   per side (`asrbench worker`) that runs a timed pass when asked: much cheaper per round,
   where the device lets two processes hold it (CPU, CUDA); differences fixed for a process's
   life stay in the effect, and the equivalence margin is what absorbs small ones.
3. After each round from --min-rounds on, abstats.decide() says DIFFERENT, SAME or UNKNOWN;
   UNKNOWN runs another round, up to --max-rounds.

The result goes through the same verdict model, policy, rendering and exit codes as
`asrbench compare`: throughput DIFFERENT and slower is a regression, faster an improvement,
SAME and UNKNOWN unchanged (UNKNOWN is said in the note and the summary: not proven either way).
"""

from __future__ import annotations

import json
import os
import random
import select
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from asrbench.abstats import Decision, decide, look_alpha
from asrbench.errors import AsrbenchError

MODES = ("processes", "workers")
PROTOCOL = "ASRBENCH-WORKER "  # prefix of the worker's reply lines on stdout
DEFAULT_ROUND_TIMEOUT = 3600.0


@dataclass
class Side:
    """One side of the comparison: how to run asrbench, and its own options."""

    name: str  # "base" or "head"
    command: list[str]  # the prefix that runs asrbench, e.g. [python, "-m", "asrbench"]
    args: list[str] = field(default_factory=list)  # run options of this side only
    cwd: Path | None = None

    def describe(self) -> str:
        text = shlex.join(self.command + self.args)
        return text + (f" (in {self.cwd})" if self.cwd else "")


@dataclass
class Settings:
    """How the A/B runs and decides."""

    shared: list[str]  # run options both sides get, before their own
    threshold: float = 0.05  # the smallest change that matters (relative)
    alpha: float = 0.05  # overall chance of calling identical sides DIFFERENT
    min_rounds: int = 4
    max_rounds: int = 12
    mode: str = "processes"
    passes: int | None = None  # timed passes per side per round (default 3 processes, 1 workers)
    rounds_limit: int | None = None  # the throughput subset (first N utterances) for the rounds
    seed: int | None = None
    round_timeout: float = DEFAULT_ROUND_TIMEOUT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AsrbenchError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 < self.threshold < 1:
            raise AsrbenchError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise AsrbenchError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.min_rounds < 2:
            raise AsrbenchError(f"--min-rounds must be >= 2 (an interval needs two rounds), "
                                f"got {self.min_rounds}")
        if self.max_rounds < self.min_rounds:
            raise AsrbenchError(f"--max-rounds ({self.max_rounds}) must be >= --min-rounds "
                                f"({self.min_rounds})")
        if self.passes is not None and self.passes < 1:
            raise AsrbenchError(f"--passes must be >= 1, got {self.passes}")
        if self.rounds_limit is not None and self.rounds_limit < 1:
            raise AsrbenchError(f"--rounds-limit must be >= 1, got {self.rounds_limit}")
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2 ** 31)

    @property
    def round_passes(self) -> int:
        return self.passes or (3 if self.mode == "processes" else 1)

    @property
    def per_look_alpha(self) -> float:
        return look_alpha(self.alpha, self.min_rounds, self.max_rounds)


@dataclass
class Round:
    """One round: the order the sides ran in, and each side's samples/s per config."""

    number: int
    order: list[str]
    samples_per_second: dict[str, list[float]]  # side -> one value per config pair
    seconds: float


@dataclass
class Outcome:
    """Everything an A/B produced."""

    settings: Settings
    sides: dict[str, Side]
    reports: dict[str, Any]  # side -> its accuracy Report (results.Report)
    pairs: list[tuple[str, str]]  # (base config id, head config id)
    rounds: list[Round] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    interrupted: bool = False

    def samples(self, side: str, index: int) -> list[float]:
        return [r.samples_per_second[side][index] for r in self.rounds]


# -- running a side -------------------------------------------------------------------------

def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_process(side: Side, args: list[str], timeout: float) -> None:
    """Run `asrbench <args>` as the side; a failure is a one-line AsrbenchError."""
    command = side.command + args
    try:
        done = subprocess.run(command, cwd=side.cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except FileNotFoundError:
        raise AsrbenchError(f"{side.name}: cannot run {shlex.join(side.command)}: no such "
                            "program") from None
    except subprocess.TimeoutExpired:
        raise AsrbenchError(f"{side.name}: no result after {timeout:g} s from "
                            f"{shlex.join(command)}") from None
    if done.returncode != 0:
        raise AsrbenchError(f"{side.name}: {shlex.join(side.command)} {args[0]} exited "
                            f"{done.returncode}: {_tail(done.stderr or done.stdout)}")


def _report_rates(path: Path, side: str) -> tuple[Any, list[float]]:
    from asrbench.report import load_report

    report = load_report(path)
    if report.interrupted:
        raise AsrbenchError(f"{side}: its run was interrupted")
    return report, [run.metrics.samples_per_second for run in report.runs]


class ProcessRunner:
    """A fresh `asrbench run` process per side per round."""

    def __init__(self, settings: Settings, sides: dict[str, Side], workdir: Path) -> None:
        self.settings, self.sides, self.workdir = settings, sides, workdir

    def _argv(self, side: Side, report: Path, passes: int, limit: int | None) -> list[str]:
        argv = ["run", *self.settings.shared, *side.args, "--passes", str(passes),
                "--report", str(report), "--no-progress"]
        return argv + (["--limit", str(limit)] if limit is not None else [])

    def accuracy(self, name: str) -> Any:
        side = self.sides[name]
        path = self.workdir / f"accuracy-{name}.json"
        run_process(side, self._argv(side, path, 1, None), self.settings.round_timeout)
        return _report_rates(path, name)[0]

    def measure(self, name: str, number: int) -> list[float]:
        side = self.sides[name]
        path = self.workdir / f"round{number}-{name}.json"
        run_process(side, self._argv(side, path, self.settings.round_passes,
                                     self.settings.rounds_limit), self.settings.round_timeout)
        return _report_rates(path, name)[1]

    def close(self) -> None:
        pass


class Worker:
    """A long-lived `asrbench worker` process of one side, driven over stdin/stdout."""

    def __init__(self, side: Side, settings: Settings) -> None:
        self.side, self.timeout = side, settings.round_timeout
        argv = ["worker", *settings.shared, *side.args, "--passes", str(settings.round_passes)]
        if settings.rounds_limit is not None:
            argv += ["--rounds-limit", str(settings.rounds_limit)]
        try:
            self.process = subprocess.Popen(side.command + argv, cwd=side.cwd, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise AsrbenchError(f"{side.name}: cannot run {shlex.join(side.command)}: no such "
                                "program") from None
        self._stderr: list[str] = []

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise AsrbenchError(self._died()) from None
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AsrbenchError(f"{self.side.name}: the worker gave no answer in "
                                    f"{self.timeout:g} s")
            ready, _, _ = select.select([process.stdout], [], [], min(left, 5.0))
            if not ready:
                continue
            line = process.stdout.readline()
            if not line:
                raise AsrbenchError(self._died())
            if line.startswith(PROTOCOL):
                reply = json.loads(line[len(PROTOCOL):])
                if not reply.get("ok"):
                    raise AsrbenchError(f"{self.side.name}: {reply.get('error', 'worker failed')}")
                return reply

    def _died(self) -> str:
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return (f"{self.side.name}: the worker ({shlex.join(self.side.command)} worker) exited "
                f"{self.process.returncode}: {_tail(err or '')}")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.ask({"op": "quit"})
            except AsrbenchError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WorkerRunner:
    """One long-lived worker per side; rounds ask each for a timed pass."""

    def __init__(self, settings: Settings, sides: dict[str, Side], workdir: Path) -> None:
        self.workdir = workdir
        self.workers = {name: Worker(side, settings) for name, side in sides.items()}

    def accuracy(self, name: str) -> Any:
        path = self.workdir / f"accuracy-{name}.json"
        self.workers[name].ask({"op": "accuracy", "report": str(path.resolve())})
        return _report_rates(path, name)[0]

    def measure(self, name: str, number: int) -> list[float]:
        return [float(v) for v in self.workers[name].ask({"op": "round"})["samples_per_second"]]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


# -- the A/B --------------------------------------------------------------------------------

def pair_runs(reports: dict[str, Any]) -> list[tuple[str, str]]:
    """Pair base and head runs by position (their ids differ when their settings do)."""
    base, head = reports["base"].runs, reports["head"].runs
    if len(base) != len(head):
        raise AsrbenchError(f"base ran {len(base)} config(s) and head {len(head)}: both sides "
                            "must run the same number of configs to be paired")
    return [(b.config.id, h.config.id) for b, h in zip(base, head)]


def run_ab(settings: Settings, sides: dict[str, Side], workdir: Path,
           say: Callable[[str], None] = lambda message: None,
           interrupts: tuple[type[BaseException], ...] = (KeyboardInterrupt,)) -> Outcome:
    """Accuracy once per side, then rounds until every pair is decided or --max-rounds.
    An interruption (`interrupts`: Ctrl-C, or the caller's SIGTERM exception) returns what
    finished, marked interrupted."""
    order_rng = random.Random(settings.seed)
    runner = (WorkerRunner if settings.mode == "workers" else ProcessRunner)(settings, sides,
                                                                             workdir)
    outcome = Outcome(settings, sides, {}, [])
    try:
        for name in ("base", "head"):
            say(f"{name}: accuracy run on the whole split")
            outcome.reports[name] = runner.accuracy(name)
        outcome.pairs = pair_runs(outcome.reports)
        alpha = settings.per_look_alpha
        for number in range(1, settings.max_rounds + 1):
            order = ["base", "head"]
            order_rng.shuffle(order)
            started = time.perf_counter()
            rates = {name: runner.measure(name, number) for name in order}
            for name in order:
                if len(rates[name]) != len(outcome.pairs):
                    raise AsrbenchError(f"{name}: round {number} gave {len(rates[name])} run(s), "
                                        f"the accuracy run {len(outcome.pairs)}")
            outcome.rounds.append(Round(number, order, rates, time.perf_counter() - started))
            outcome.decisions = [
                decide(outcome.samples("base", i), outcome.samples("head", i),
                       settings.threshold, alpha) for i in range(len(outcome.pairs))]
            say(f"round {number} ({' then '.join(order)}): " + "; ".join(
                f"{d.outcome} {'-' if d.ratio is None else format(d.ratio, '.3f')}"
                for d in outcome.decisions))
            if number >= settings.min_rounds and all(d.outcome != "UNKNOWN"
                                                     for d in outcome.decisions):
                break
    except interrupts:
        outcome.interrupted = True
    finally:
        runner.close()
    return outcome


# -- verdicts -------------------------------------------------------------------------------

EXACT = {"wer_abs": 0.0, "cer_abs": 0.0}


def _throughput_verdict(label: str, decision: Decision, base: list[float], head: list[float],
                        settings: Settings) -> Any:
    import statistics

    from asrbench.compare import Verdict

    base_median, head_median = statistics.median(base), statistics.median(head)
    if decision.outcome == "DIFFERENT":
        verdict = "regressed" if decision.slower else "improved"
    else:
        verdict = "unchanged"
    note = f"A/B {decision.describe()}; {settings.mode}, {settings.round_passes} pass(es) a round"
    if decision.outcome == "UNKNOWN":
        note += "; not proven either way: more --max-rounds or a larger --threshold decides"
    return Verdict(label, "samples_per_second", verdict, head_median, base_median,
                   head_median - base_median, settings.threshold * base_median, note)


def comparisons(outcome: Outcome) -> list[Any]:
    """One Comparison per config pair: exact accuracy of head against base, and the A/B
    throughput verdict."""
    from asrbench.baselines import entry_from_run
    from asrbench.compare import compare_run

    out = []
    base_report, head_report = outcome.reports["base"], outcome.reports["head"]
    for index, ((base_id, head_id), base_run, head_run) in enumerate(
            zip(outcome.pairs, base_report.runs, head_report.runs)):
        label = base_id if base_id == head_id else f"{base_id} -> {head_id}"
        entry = entry_from_run(base_run, base_report.environment, tolerance=EXACT)
        comparison = compare_run(head_run, entry)
        comparison.config_id = label
        verdicts = []
        for verdict in comparison.verdicts:
            if verdict.metric == "samples_per_second":
                if index < len(outcome.decisions):
                    verdict = _throughput_verdict(label, outcome.decisions[index],
                                                  outcome.samples("base", index),
                                                  outcome.samples("head", index), outcome.settings)
                else:  # interrupted before the first round
                    continue
            verdicts.append(type(verdict)(**{**verdict.__dict__, "config_id": label}))
        comparison.verdicts = verdicts
        out.append(comparison)
    return out


def header(outcome: Outcome) -> list[str]:
    """Plain lines saying what was compared and how."""
    s = outcome.settings
    lines = [f"base: {outcome.sides['base'].describe()}",
             f"head: {outcome.sides['head'].describe()}",
             f"shared options: {shlex.join(s.shared) or '(none)'}",
             f"{len(outcome.rounds)} round(s), mode {s.mode}, {s.round_passes} timed pass(es) per "
             f"side per round" + (f" on the first {s.rounds_limit} utterances"
                                  if s.rounds_limit else "")
             + f", threshold {s.threshold:.0%}, alpha {s.alpha:g} "
             f"({s.per_look_alpha:.4g} per look), order seed {s.seed}"]
    if outcome.interrupted:
        lines.append("INTERRUPTED: the rounds that finished are below; no verdict is final")
    return lines


def document(outcome: Outcome, comps: list[Any], failed: bool) -> dict[str, Any]:
    """The JSON document of an A/B (results.AbReport)."""
    from asrbench.report import environment
    from asrbench.results import AbReport, dump

    s = outcome.settings
    body = {
        "schema": 1, "kind": "ab", "interrupted": outcome.interrupted, "failed": failed,
        "environment": environment(),
        "settings": {"shared": s.shared, "threshold": s.threshold, "alpha": s.alpha,
                     "alpha_per_look": s.per_look_alpha, "min_rounds": s.min_rounds,
                     "max_rounds": s.max_rounds, "mode": s.mode, "passes": s.round_passes,
                     "rounds_limit": s.rounds_limit, "seed": s.seed},
        "sides": {name: {"command": side.command, "args": side.args,
                         "cwd": str(side.cwd) if side.cwd else None,
                         "report": outcome.reports.get(name)}
                  for name, side in outcome.sides.items()},
        "pairs": [{"base": b, "head": h} for b, h in outcome.pairs],
        "rounds": [{"number": r.number, "order": r.order, "seconds": r.seconds,
                    "samples_per_second": r.samples_per_second} for r in outcome.rounds],
        "decisions": [d.to_dict() for d in outcome.decisions],
        "comparisons": [c.to_dict() for c in comps],
    }
    return dump(AbReport.model_validate(body))


def default_command(python: str | None, command: str | None, name: str) -> list[str]:
    """The command prefix of a side: --X-command, else --X-python -m asrbench, else this
    interpreter's."""
    if python and command:
        raise AsrbenchError(f"--{name}-python and --{name}-command both say how to run {name}: "
                            "give one")
    if command:
        parts = shlex.split(command)
        if not parts:
            raise AsrbenchError(f"--{name}-command is empty")
        return parts
    return [python or sys.executable, "-m", "asrbench"]


# -- the worker (the other end of WorkerRunner) ------------------------------------------------

def serve(configs: list[Any], passes: int, rounds_limit: int | None,
          stdin: Any = None) -> int:
    """`asrbench worker`: answer accuracy/round/quit requests, one JSON line each, on the
    stdout the process started with; everything else printed goes to stderr."""
    from asrbench.report import build_report, environment, write_report
    from asrbench.runner import Session

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (libraries, progress) cannot corrupt the replies
    sys.stdout = sys.stderr
    stdin = stdin or sys.stdin
    session = Session(progress=False)
    rounds = 0

    def reply(body: dict[str, Any]) -> None:
        protocol.write(PROTOCOL + json.dumps(body) + "\n")
        protocol.flush()

    for line in stdin:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "quit":
                reply({"ok": True})
                return 0
            if op == "accuracy":
                results = [session.evaluate(config, 1) for config in configs]
                device = dict(results[-1].device) if results else {}
                write_report(Path(request["report"]), build_report(results, environment(device)))
                reply({"ok": True})
            elif op == "round":
                rates = []
                for config in configs:
                    timed = config.replace(
                        limit=rounds_limit if rounds_limit is not None else config.limit,
                        # The process is warm after the accuracy run; the first round still
                        # warms the (possibly smaller) subset's shapes once.
                        warmup_batches=config.warmup_batches if rounds == 0 else 0)
                    result = session.measure(timed, passes)
                    rates.append(result.metrics()["samples_per_second"])
                rounds += 1
                reply({"ok": True, "samples_per_second": rates})
            else:
                reply({"ok": False, "error": f"unknown request {op!r}"})
        except AsrbenchError as exc:
            reply({"ok": False, "error": str(exc)})
            return 2
        except Exception as exc:  # the parent prints one line; the traceback is on stderr
            import traceback

            traceback.print_exc()
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            return 1
    return 0

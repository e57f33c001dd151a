"""`asrbench ab`: base against head on the same machine, interleaved, until the throughput
verdict is clear; accuracy compared exactly.

What asv continuous, Bencher's relative mode and Chromium's Pinpoint do for code, for speech
models. A side is a command that runs asrbench (default: this interpreter's `-m asrbench`;
another virtual environment's python, e.g. a checkout of the base branch) plus its own run
options, so the two sides can differ in environment or in settings.

1. Accuracy, once per side, on the whole split: WER, CER and every transcript, compared
   exactly (no tolerance: the same split through the same code gives the same text).
2. Throughput, in rounds: each round runs a fresh `asrbench run` process per side, back to
   back in a random order (recorded), on the throughput subset (--rounds-limit). Only one
   process holds the device at a time (a Gaudi card takes one). On a host with several cards,
   --cards A,B runs the two sides of a round at the same time, one per card, and deals the
   cards to the sides at random each round (recorded): a difference between the two cards
   then falls on base and head alike, and a round takes one process's time instead of two.

Why a fresh process every round, not two long-lived workers that alternate: throughput has a
part that is fixed for a process's life and differs between processes: two long-lived workers
of the same code and settings were called DIFFERENT (docs/performance.md, "Noise between
processes"). Only new processes sample that part, so each round pays a process start (imports,
model, data, warm-up), and the rule needs more rounds than the spread inside one process
suggests.
3. At the looks (decision.look_rounds: --min-rounds, then each about 1.5 times the last, and
   --max-rounds; 4, 6, 9, 14, 20 by default) decision.decide() says DIFFERENT, SAME or UNKNOWN;
   UNKNOWN runs more rounds, up to --max-rounds.

The result goes through the same verdict model, policy, rendering and exit codes as
`asrbench compare`: throughput DIFFERENT and slower is a regression, faster an improvement,
SAME and UNKNOWN unchanged (UNKNOWN is said in the note and the summary: not proven either way).
"""

from __future__ import annotations

import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asrbench import processes
from asrbench.ab.decision import Decision, decide, look_alpha, look_rounds
from asrbench.config.settings import AB_ROUND_VARIABLE
from asrbench.errors import AsrbenchError
from asrbench.formats.environment import environment
from asrbench.formats.io import load_report
from asrbench.formats.model import (
    MAX_COUNT,
    SCHEMA_VERSION,
    AbReport,
    AbRound,
    AbSettings,
    AbSide,
    Comparison,
    Environment,
    Report,
    SideName,
    Tolerance,
    dump,
)
from asrbench.formats.redact import redact, redact_argv, redact_command
from asrbench.gate.baselines import entry_from_run
from asrbench.gate.compare import Verdict, compare_run
from asrbench.gate.counters import COUNTER_METRICS, describe_changes

DEFAULT_ROUND_TIMEOUT = 3600.0


@dataclass
class Side:
    """One side of the comparison: how to run asrbench, and its own options."""

    name: str  # "base" or "head"
    command: list[str]  # the prefix that runs asrbench, e.g. [python, "-m", "asrbench"]
    args: list[str] = field(default_factory=list)  # run options of this side only
    cwd: Path | None = None

    def describe(self) -> str:
        text = redact_command(self.command + self.args)
        return text + (f" (in {self.cwd})" if self.cwd else "")


@dataclass
class Settings:
    """How the A/B runs and decides."""

    shared: list[str]  # run options both sides get, before their own
    threshold: float = 0.05  # the smallest change that matters (relative)
    alpha: float = 0.05  # overall chance of calling identical sides DIFFERENT
    min_rounds: int = 4
    max_rounds: int = 20
    passes: int | None = None  # timed passes per side per round (default 2)
    rounds_limit: int | None = None  # the throughput subset (first N utterances) for the rounds
    seed: int | None = None
    round_timeout: float = DEFAULT_ROUND_TIMEOUT
    cards: tuple[str, str] | None = None  # two cards: both sides at once, dealt at random
    cards_variable: str | None = None  # the environment variable that picks a process's card
    #: Gaudi recipe cache: each side's processes share <root>/<side> (RECIPE_VARIABLE); the
    #: root is recipe_cache, else a folder in the A/B's working directory
    hpu_recipes: bool = False
    recipe_cache: Path | None = None

    def __post_init__(self) -> None:
        # counts the A/B's JSON document records: bounded as it is (formats.model.MAX_COUNT),
        # checked before any process starts (the document refused them after the whole A/B)
        for option, count in (("--seed", self.seed), ("--rounds-limit", self.rounds_limit),
                              ("--max-rounds", self.max_rounds),
                              ("--min-rounds", self.min_rounds), ("--passes", self.passes)):
            if count is not None and abs(count) > MAX_COUNT:
                raise AsrbenchError(f"{option} must be at most {MAX_COUNT}, got {count}")
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
        if not (math.isfinite(self.round_timeout) and self.round_timeout > 0):
            raise AsrbenchError(f"--round-timeout must be a number of seconds > 0, got "
                                f"{self.round_timeout:g}")
        if self.cards is not None:
            if len(self.cards) != 2 or len(set(self.cards)) != 2 or not all(self.cards):
                raise AsrbenchError(f"--cards takes two different cards, e.g. 0,1; got "
                                    f"{','.join(self.cards)}")
            if not self.cards_variable:
                raise AsrbenchError("--cards needs --device hpu or cuda (or --cards-variable "
                                    "NAME: the environment variable that picks a card)")
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2 ** 31)

    @property
    def round_passes(self) -> int:
        return self.passes or 2

    def record(self, pairs: int = 1) -> AbSettings:
        """The settings as the A/B's document records them (`pairs`: the config pairs it
        decided, which share --alpha)."""
        return AbSettings(shared=self.shared, threshold=self.threshold, alpha=self.alpha,
                          alpha_per_look=self.level(pairs), looks=self.looks,
                          min_rounds=self.min_rounds, max_rounds=self.max_rounds,
                          passes=self.round_passes, rounds_limit=self.rounds_limit,
                          seed=self.seed, cards=list(self.cards) if self.cards else None,
                          cards_variable=self.cards_variable)

    @property
    def per_look_alpha(self) -> float:
        return look_alpha(self.alpha, self.min_rounds, self.max_rounds)

    def level(self, pairs: int) -> float:
        """The level of each decision: --alpha shared by the looks and by the `pairs` config
        pairs decided together (Bonferroni over both), so identical sides are called DIFFERENT
        in any config with probability below --alpha (the default run has two configs)."""
        return self.per_look_alpha / max(1, pairs)

    @property
    def looks(self) -> list[int]:
        return look_rounds(self.min_rounds, self.max_rounds)


#: One round: the order the sides ran in, and each side's samples/s per config pair; the type
#: the document stores.
Round = AbRound


@dataclass
class Outcome:
    """Everything an A/B produced."""

    settings: Settings
    sides: dict[str, Side]
    reports: dict[str, Report]  # side -> its accuracy run
    pairs: list[tuple[str, str]]  # (base config id, head config id)
    rounds: list[Round] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    interrupted: bool = False

    def samples(self, side: SideName, index: int) -> list[float]:
        return [r.samples_per_second[side][index] for r in self.rounds]


# -- running a side -------------------------------------------------------------------------

def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_process(side: Side, args: list[str], timeout: float) -> None:
    """Run `asrbench <args>` as the side; a failure is a one-line AsrbenchError."""
    run_together([(side, args, None)], timeout)


def run_together(jobs: Sequence[tuple[Side, list[str], dict[str, str] | None]],
                 timeout: float) -> None:
    """Run `asrbench <args>` for every (side, args, extra environment) at the same time and
    wait for all; the first to fail is a one-line AsrbenchError, and whatever still runs then
    (or on an interruption, or past `timeout`) is ended: SIGTERM to its process group, SIGKILL
    after processes.GRACE_SECONDS. Output goes to temporary files, not
    pipes, so a chatty process never blocks while another is awaited."""
    running: list[tuple[Side, list[str], subprocess.Popen, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        for side, args, env in jobs:
            output = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
            try:
                # its own process group: ended with SIGTERM first (processes.end), so the run
                # writes its partial report, removes its feature cache, ends its workers
                process = processes.start(side.command + args, cwd=side.cwd, stdout=output,
                                          stderr=subprocess.STDOUT, text=True,
                                          env={**os.environ, **env} if env else None)
            except FileNotFoundError:
                output.close()
                raise AsrbenchError(f"{side.name}: cannot run {redact_command(side.command)}: no "
                                    "such program") from None
            running.append((side, args, process, output))
        pending = list(running)
        while pending:
            if len(pending) == 1:  # one left (always, one side at a time): block, not poll
                try:
                    pending[0][2].wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            for job in list(pending):
                side, args, process, output = job
                if process.poll() is None:
                    continue
                pending.remove(job)
                if process.returncode != 0:
                    output.seek(0)
                    raise AsrbenchError(f"{side.name}: {redact_command(side.command)} {args[0]} "
                                        f"exited {process.returncode}: "
                                        f"{redact(_tail(output.read()))}")
            if pending and time.monotonic() > deadline:
                side, args = pending[0][0], pending[0][1]
                raise AsrbenchError(f"{side.name}: no result after {timeout:g} s from "
                                    f"{redact_command(side.command + args)}")
            if len(pending) > 1:
                time.sleep(0.05)
    finally:
        # SIGTERM to what still runs (and its children), SIGKILL after a grace period
        processes.end_all([process for _, _, process, _ in running])
        for _, _, _, output in running:
            output.close()


def _report_rates(path: Path, side: str) -> tuple[Any, list[float]]:
    report = load_report(path)
    if report.interrupted:
        raise AsrbenchError(f"{side}: its run was interrupted")
    rates = [run.metrics.samples_per_second for run in report.runs]
    timed = [rate for rate in rates if rate is not None]
    if len(timed) < len(rates):
        raise AsrbenchError(f"{side}: its run timed nothing (counters-only): no samples/s")
    return report, timed


#: what a timing round's process gets in its environment: no counted pass (AB_ROUND_VARIABLE)
ROUND_ENVIRONMENT = {AB_ROUND_VARIABLE: "1"}
#: Intel Gaudi's on-disk recipe cache: "<dir>,<delete the folder's recipes first>,<MB>"
RECIPE_VARIABLE = "PT_HPU_RECIPE_CACHE_CONFIG"
RECIPE_CACHE_MB = 8192
#: devices whose A/B sides get a recipe cache by default (the emulated one for its tests)
RECIPE_DEVICES = ("hpu", "hpu-emulated")


def recipe_environment(root: Path | None, side: str) -> dict[str, str]:
    """The environment that gives every process of `side` the same recipe folder,
    <root>/<side>, kept across processes (delete = false): the first process compiles and
    writes, the later ones load. {} without a root."""
    if root is None:
        return {}
    folder = root / side
    folder.mkdir(parents=True, exist_ok=True)
    return {RECIPE_VARIABLE: f"{folder},false,{RECIPE_CACHE_MB}"}


class ProcessRunner:
    """A fresh `asrbench run` process per side per round."""

    def __init__(self, settings: Settings, sides: dict[str, Side], workdir: Path) -> None:
        self.settings, self.sides, self.workdir = settings, sides, workdir
        self.recipes = (settings.recipe_cache or workdir / "hpu-recipes"
                        if settings.hpu_recipes else None)

    def _environment(self, name: str, **extra: str) -> dict[str, str]:
        """A process's extra environment: the side's recipe folder, then `extra`."""
        return {**recipe_environment(self.recipes, name), **extra}

    def _argv(self, side: Side, report: Path, passes: int, limit: int | None) -> list[str]:
        # A report left at the path (--keep-reports names a folder that an earlier A/B used)
        # must never stand in for a side that wrote none: it goes before the side starts.
        report.unlink(missing_ok=True)
        argv = ["run", *self.settings.shared, *side.args, "--passes", str(passes),
                "--report", str(report), "--no-progress"]
        return argv + (["--limit", str(limit)] if limit is not None else [])

    def accuracy(self, name: str) -> Any:
        side = self.sides[name]
        path = self.workdir / f"accuracy-{name}.json"
        run_together([(side, self._argv(side, path, 1, None), self._environment(name) or None)],
                     self.settings.round_timeout)
        return _report_rates(path, name)[0]

    def _round_argv(self, name: str, number: int) -> tuple[list[str], Path]:
        path = self.workdir / f"round{number}-{name}.json"
        return self._argv(self.sides[name], path, self.settings.round_passes,
                          self.settings.rounds_limit), path

    def measure(self, name: str, number: int) -> list[float]:
        argv, path = self._round_argv(name, number)
        run_together([(self.sides[name], argv, self._environment(name, **ROUND_ENVIRONMENT))],
                     self.settings.round_timeout)
        return _report_rates(path, name)[1]

    def measure_on_cards(self, number: int, cards: dict[str, str]) -> dict[str, list[float]]:
        """Both sides at the same time, each on its card (--cards)."""
        jobs, paths = [], {}
        variable = self.settings.cards_variable
        assert variable is not None  # (Settings refuses --cards without a cards variable)
        for name, card in cards.items():
            argv, paths[name] = self._round_argv(name, number)
            jobs.append((self.sides[name], argv, self._environment(
                name, **ROUND_ENVIRONMENT, **{variable: card})))
        run_together(jobs, self.settings.round_timeout)
        return {name: _report_rates(path, name)[1] for name, path in paths.items()}


# -- the A/B --------------------------------------------------------------------------------

def pair_runs(reports: dict[str, Report]) -> list[tuple[str, str]]:
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
    runner = ProcessRunner(settings, sides, workdir)
    outcome = Outcome(settings, sides, {}, [])
    try:
        for name in ("base", "head"):
            say(f"{name}: accuracy run on the whole split")
            outcome.reports[name] = runner.accuracy(name)
        outcome.pairs = pair_runs(outcome.reports)
        alpha = settings.level(len(outcome.pairs))
        for number in range(1, settings.max_rounds + 1):
            order = ["base", "head"]
            order_rng.shuffle(order)
            started = time.perf_counter()
            cards = None
            if settings.cards:  # the first of the shuffled order gets the first card
                cards = dict(zip(order, settings.cards))
                rates = runner.measure_on_cards(number, cards)
            else:
                rates = {name: runner.measure(name, number) for name in order}
            for name in order:
                if len(rates[name]) != len(outcome.pairs):
                    raise AsrbenchError(f"{name}: round {number} gave {len(rates[name])} run(s), "
                                        f"the accuracy run {len(outcome.pairs)}")
            outcome.rounds.append(Round(number=number, order=order, samples_per_second=rates,
                                        seconds=time.perf_counter() - started, cards=cards))
            outcome.decisions = [
                decide(outcome.samples("base", i), outcome.samples("head", i),
                       settings.threshold, alpha) for i in range(len(outcome.pairs))]
            look = number in settings.looks
            ran = (' then '.join(order) if cards is None
                   else ", ".join(f"{n} on card {c}" for n, c in sorted(cards.items())))
            say(f"round {number} ({ran}): " + "; ".join(
                (f"{d.outcome} " if look else "head/base ")
                + ('-' if d.ratio is None else format(d.ratio, '.3f'))
                for d in outcome.decisions)
                + ("" if look else f" (next look after round "
                   f"{min(n for n in settings.looks if n > number)})"))
            if look and all(d.outcome != "UNKNOWN" for d in outcome.decisions):
                break
    except interrupts:
        outcome.interrupted = True
    return outcome


# -- verdicts -------------------------------------------------------------------------------

EXACT = Tolerance(wer_abs=0.0, cer_abs=0.0)


def _throughput_verdict(label: str, decision: Decision, base: list[float], head: list[float],
                        settings: Settings) -> Any:
    base_median, head_median = statistics.median(base), statistics.median(head)
    if decision.outcome == "DIFFERENT":
        verdict = "regressed" if decision.slower else "improved"
    else:
        verdict = "unchanged"
    note = f"A/B {decision.describe()}; {settings.round_passes} pass(es) a process"
    # The row's value and baseline are each side's median over its rounds; the verdict is the
    # paired ratio's (round by round), which can point the other way on a noisy runner.
    note += "; value and baseline: each side's median over its rounds"
    if decision.ratio is not None and (head_median - base_median) * (decision.ratio - 1) < 0:
        note += (f" (they point the other way: head/base of the medians "
                 f"{head_median / base_median:.3f}; the verdict is the paired ratio's)")
    if decision.outcome == "UNKNOWN":
        note += "; not proven either way: more --max-rounds or a larger --threshold decides"
    return Verdict(config_id=label, metric="samples_per_second", verdict=verdict,
                   value=head_median, baseline=base_median, delta=head_median - base_median,
                   allowed=settings.threshold * base_median, note=note)


def comparisons(outcome: Outcome) -> list[Any]:
    """One Comparison per config pair: exact accuracy of head against base, and the A/B
    throughput verdict."""
    out = []
    base_report, head_report = outcome.reports["base"], outcome.reports["head"]
    for index, ((base_id, head_id), base_run, head_run) in enumerate(
            zip(outcome.pairs, base_report.runs, head_report.runs)):
        label = base_id if base_id == head_id else f"{base_id} -> {head_id}"
        entry = entry_from_run(base_run, base_report.environment, tolerance=EXACT)
        comparison = compare_run(head_run, entry)
        comparison.config_id = label
        verdicts = []
        if base_id != head_id:
            # Two settings (batch 1 against batch 2, fp32 against bf16, --eos-check-every)
            # count different work by design: said, with what moved, never failed. The same
            # config on two code versions is compared exactly.
            moved = describe_changes(comparison.verdicts)
            comparison.verdicts = [v for v in comparison.verdicts
                                   if v.metric not in COUNTER_METRICS]
            comparison.verdicts.append(Verdict(
                config_id=label, metric="counters", verdict="unchanged", value=None,
                baseline=None, delta=None, allowed=0.0,
                note="counters not compared: the two sides run different settings" + (
                    f" (what moved: {moved})" if moved else "")))
        for verdict in comparison.verdicts:
            if verdict.metric == "samples_per_second":
                if index < len(outcome.decisions):
                    verdict = _throughput_verdict(label, outcome.decisions[index],
                                                  outcome.samples("base", index),
                                                  outcome.samples("head", index), outcome.settings)
                else:  # interrupted before the first round
                    continue
            verdicts.append(verdict.model_copy(update={"config_id": label}))
        comparison.verdicts = verdicts
        out.append(comparison)
    return out


def document(outcome: Outcome, comps: list[Comparison], failed: bool) -> dict[str, Any]:
    """The JSON document of an A/B (formats.model.AbReport)."""
    report = AbReport(
        schema_=SCHEMA_VERSION, kind="ab", interrupted=outcome.interrupted, failed=failed,
        environment=Environment.model_validate(environment()),
        settings=outcome.settings.record(len(outcome.pairs)),
        sides={name: AbSide(command=redact_argv(side.command), args=redact_argv(side.args),
                            cwd=str(side.cwd) if side.cwd else None,
                            report=outcome.reports.get(name))
               for name, side in outcome.sides.items()},
        pairs=[{"base": b, "head": h} for b, h in outcome.pairs],
        rounds=outcome.rounds, decisions=outcome.decisions, comparisons=comps)
    return dump(report)


def default_command(python: str | None, command: str | None, name: str) -> list[str]:
    """The command prefix of a side: --X-command, else --X-python -m asrbench, else this
    interpreter's."""
    if python is not None and command is not None:
        raise AsrbenchError(f"--{name}-python and --{name}-command both say how to run {name}: "
                            "give one")
    # given but empty (an unset CI variable: --head-command "$HEAD_CMD") is refused, never
    # taken for "not given", which would run this interpreter's asrbench on that side
    if command is not None:
        try:
            parts = shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise AsrbenchError(f"--{name}-command {redact(command)}: {exc}") from None
        if not parts:
            raise AsrbenchError(f"--{name}-command is empty")
        return parts
    if python is not None and not python.strip():
        raise AsrbenchError(f"--{name}-python is empty")
    return [python or sys.executable, "-m", "asrbench"]

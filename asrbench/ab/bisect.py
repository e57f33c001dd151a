"""`asrbench bisect GOOD BAD`: the first commit where the work counters (exact, fast) or the
throughput (an A/B, slow) changed, found by `git bisect run` in a temporary worktree of the
user's repository (what asv's `find` and Chromium's Pinpoint do).

The user's checkout and its own bisect state are never touched: everything happens in a
`git worktree add --detach` under a temporary directory (bisect refs and logs are per worktree),
removed at the end, also on errors and interruptions. GOOD is measured once; BAD is measured
before the bisect starts (a BAD that measures like GOOD has nothing to find); then each step of
`git bisect run` measures the commit checked out and exits 0 (good: measures like GOOD), 1
(bad: changed) or 125 (skip: the commit cannot be judged: its measurement failed, it was not
counted, or it counted under other counter definitions than GOOD). Skipped commits are listed
with the result, never judged bad.

Counter definitions (COUNTER_VERSION) may change inside the range: counts made under two
definitions are never compared. When BAD counts under another version than GOOD, a first
bisect finds the commit where the definitions changed (a step is judged on the version it
counts under), then the counts are bisected under one definition: GOOD .. the parent of that
commit when they moved there, else that commit .. BAD; when they moved on neither side, bisect
stops and says so (the only difference is the definition change itself).

A measurement is `asrbench run` in a fresh process whose working directory and PYTHONPATH are
the worktree, so the commit's own asrbench runs; or --command, any shell command that writes a
report to {report}. The step process itself runs the bisecting asrbench (its package directory
is put first on sys.path), never the commit's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import asrbench
from asrbench import processes
from asrbench.ab import rounds
from asrbench.errors import AsrbenchError
from asrbench.formats.io import load_report
from asrbench.formats.redact import redact
from asrbench.gate.counters import UNSTABLE, counter_verdicts, describe_changes

METRICS = ("counters", "throughput")
#: `git bisect run` step exit codes
GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
#: a measurement that runs longer than this is skipped (seconds)
MEASURE_TIMEOUT = 3600.0
#: the A/B of a throughput step: few rounds, so a step takes minutes, not an hour
AB_MIN_ROUNDS, AB_MAX_ROUNDS = 4, 9


@dataclass
class Plan:
    """What every step needs, written to a JSON file that the step processes read."""

    metric: str  # "counters" or "throughput"
    worktree: str  # the bisect worktree
    results: str  # directory of <sha>.json step results and <sha>-report.json reports
    good_sha: str
    run_args: list[str] = field(default_factory=list)  # options of `asrbench run`
    command: str | None = None  # --command, with {report}
    good_worktree: str | None = None  # throughput: a second worktree held at GOOD
    version: int | None = None  # counters: the COUNTER_VERSION a step must count under
    #: counters, the definition search: [GOOD's version, BAD's version]; a step is good when it
    #: counts under the first, bad under the second (its counts are not compared)
    find_version: list[int] | None = None


@dataclass
class Found:
    """The first bad commit and what changed there."""

    sha: str
    subject: str
    changes: str
    #: commits that could not be judged: (sha, subject, why), in the order measured
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: where the counter definitions changed inside the range, and how it was handled
    definitions: str | None = None


# -- git ------------------------------------------------------------------------------------

def _git(cwd: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise AsrbenchError("git not found: asrbench bisect needs git on PATH") from None
    if check and done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise AsrbenchError(f"git {' '.join(args[:2])} failed: "
                            f"{redact(tail[-1]) if tail else done.returncode}")
    return done


def repository_root(repo: Path) -> Path:
    """The top of the work tree holding `repo`; a user error if it is not in a git repository."""
    if not Path(repo).is_dir():
        raise AsrbenchError(f"--repo {repo}: not a directory")
    done = _git(repo, "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise AsrbenchError(f"--repo {repo}: not a git repository (or not its work tree)")
    return Path(done.stdout.strip())


def resolve_commit(root: Path, name: str, what: str) -> str:
    """The full sha of a commit-ish; a user error naming it when it is unknown."""
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}",
                check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise AsrbenchError(f"{what} {name}: unknown commit in {root}")
    return done.stdout.strip()


def check_range(root: Path, good: str, bad: str, good_name: str, bad_name: str) -> None:
    """GOOD must be a proper ancestor of BAD."""
    if good == bad:
        raise AsrbenchError(f"GOOD {good_name} and BAD {bad_name} are the same commit")
    if _git(root, "merge-base", "--is-ancestor", good, bad, check=False).returncode != 0:
        raise AsrbenchError(f"GOOD {good_name} is not an ancestor of BAD {bad_name}: bisect "
                            "needs GOOD before BAD on one line of history")


def subject(root: str | Path, sha: str) -> str:
    return _git(root, "log", "-1", "--format=%s", sha).stdout.strip()


# -- one measurement ------------------------------------------------------------------------

def _counting_mode(worktree: str) -> list[str]:
    """How a step counts: `--counters-only` (no timed pass, no warm-up on the CPU) where the
    commit's asrbench has it, else one timed pass (older commits)."""
    try:
        options = (Path(worktree) / "asrbench" / "config" / "options.py").read_text("utf-8")
    except OSError:
        options = ""
    return ["--counters-only"] if '"counters-only"' in options else ["--passes", "1"]


def _measure_report(plan: Plan, worktree: str, report: Path) -> None:
    """Write the report of the commit checked out in `worktree` to `report` (a fresh process
    whose cwd and PYTHONPATH are the worktree); a failure is an AsrbenchError."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (worktree, env.get("PYTHONPATH")) if p)
    if plan.command is not None:
        argv: Any = plan.command.replace("{report}", shlex.quote(str(report)))
        shell = True
    else:
        argv = [sys.executable, "-m", "asrbench", "run", *_counting_mode(worktree),
                *plan.run_args, "--report", str(report), "--no-progress"]
        shell = False
    try:
        # its own process group, ended with SIGTERM first (its partial report, its cache)
        done = processes.run(argv, cwd=worktree, env=env, shell=shell, capture_output=True,
                             text=True, errors="replace", timeout=MEASURE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AsrbenchError(f"no report after {MEASURE_TIMEOUT:g} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise AsrbenchError(f"the measurement exited {done.returncode}: "
                            f"{redact(lines[-1].strip()) if lines else '(no output)'}")
    if not report.is_file():
        raise AsrbenchError(f"the measurement wrote no report to {report}")


def counters_changes(good: Any, current: Any) -> str:
    """What changed between two reports' counters, run by run ("" when nothing did)."""
    if len(good.runs) != len(current.runs):
        return f"{len(good.runs)} run(s) -> {len(current.runs)} run(s)"
    texts = []
    for before, after in zip(good.runs, current.runs):
        a, b = before.counters, after.counters
        if (a is None) != (b is None):
            text = "counted -> not counted" if b is None else "not counted -> counted"
        elif a is None or a.model_dump(exclude=UNSTABLE) == b.model_dump(exclude=UNSTABLE):
            continue
        else:
            text = describe_changes(counter_verdicts(after.config.id, b, a))
            if not text:  # moved somewhere the verdicts do not name (steps, tokens, selection)
                old, new = a.model_dump(exclude=UNSTABLE), b.model_dump(exclude=UNSTABLE)
                text = "; ".join(f"{k} {old[k]} -> {new[k]}" for k in old if old[k] != new[k])
        texts.append(text if len(good.runs) == 1 else f"{after.config.id}: {text}")
    return "; ".join(texts)


def counted_problem(good: Any, current: Any) -> str | None:
    """Why `current`'s counters cannot be compared with `good`'s (one line), or None: a run
    that one side counted and the other did not, or counts under other definitions."""
    for before, after in zip(good.runs, current.runs):
        a, b = before.counters, after.counters
        if (a is None) != (b is None):
            side = "this commit" if b is None else "GOOD"
            return (f"{after.config.id}: not counted by {side} (--no-counters, or counting "
                    "failed): nothing to compare")
        if a is not None and a.version != b.version:
            return (f"{after.config.id}: counted under COUNTER_VERSION {b.version}, GOOD under "
                    f"{a.version}: counts under other definitions are not compared")
    return None


def counter_version(report: Any) -> int | None:
    """The one COUNTER_VERSION the report's counted runs count under (None: none counted)."""
    versions = {run.counters.version for run in report.runs if run.counters is not None}
    if len(versions) > 1:
        raise AsrbenchError(f"the report's runs count under several COUNTER_VERSIONs "
                            f"{sorted(versions)}")
    return versions.pop() if versions else None


def _report(plan: Plan, sha: str) -> Any:
    """The commit's report, measured once: a later phase of the bisect reuses it (counts are
    exact: the same commit counts the same), and a failed measurement is not run again."""
    path = Path(plan.results) / f"{sha}-report.json"
    failed = Path(plan.results) / f"{sha}-failed.txt"
    if failed.is_file():
        raise AsrbenchError(failed.read_text(encoding="utf-8"))
    if not path.is_file():
        try:
            _measure_report(plan, plan.worktree, path)
        except AsrbenchError as exc:
            failed.write_text(str(exc), encoding="utf-8")
            raise
    return load_report(path)


def _judge_counters(plan: Plan, sha: str) -> tuple[int, str]:
    try:
        current = _report(plan, sha)
    except AsrbenchError as exc:
        return SKIP, f"skipped: {exc}"
    if plan.find_version is not None:
        try:
            version = counter_version(current)
        except AsrbenchError as exc:
            return SKIP, f"skipped: {exc}"
        old, new = plan.find_version
        if version == old:
            return GOOD, f"counts under COUNTER_VERSION {old}, as GOOD"
        if version == new:
            return BAD, f"counts under COUNTER_VERSION {new}, as BAD"
        return SKIP, ("skipped: not counted" if version is None else
                      f"skipped: counts under COUNTER_VERSION {version}, neither GOOD's nor BAD's")
    good = _report(plan, plan.good_sha)
    problem = counted_problem(good, current)
    if problem:
        return SKIP, f"skipped: {problem}"
    changes = counters_changes(good, current)
    return (BAD, changes) if changes else (GOOD, "same counters as GOOD")


def _judge_throughput(plan: Plan, sha: str) -> tuple[int, str]:
    settings = rounds.Settings(shared=list(plan.run_args), min_rounds=AB_MIN_ROUNDS,
                               max_rounds=AB_MAX_ROUNDS)
    command = [sys.executable, "-m", "asrbench"]  # -m: the cwd's (the worktree's) asrbench
    sides = {"base": rounds.Side("base", command, [], Path(plan.good_worktree or "")),
             "head": rounds.Side("head", command, [], Path(plan.worktree))}
    with tempfile.TemporaryDirectory(prefix="asrbench-bisect-ab-") as tmp:
        try:
            outcome = rounds.run_ab(settings, sides, Path(tmp))
        except AsrbenchError as exc:
            return SKIP, f"skipped: {exc}"
    if outcome.interrupted:
        return ABORT, "interrupted"
    decisions = outcome.decisions
    text = "; ".join(d.describe() for d in decisions) or "no rounds"
    if any(d.outcome == "DIFFERENT" for d in decisions):
        return BAD, f"throughput changed: {text}"
    if decisions and all(d.outcome == "SAME" for d in decisions):
        return GOOD, f"same throughput as GOOD: {text}"
    return SKIP, f"skipped, throughput not decided: {text}"


def judge(plan: Plan, sha: str) -> tuple[int, str]:
    """Measure the commit checked out in the plan's worktree: (exit code for git bisect, text)."""
    return (_judge_throughput if plan.metric == "throughput" else _judge_counters)(plan, sha)


def step_main(argv: list[str]) -> int:
    """`git bisect run`'s command: judge HEAD of the worktree, record the result, exit 0/1/125
    (128 aborts the bisect: a fault of asrbench, not of the commit)."""
    # bisect ends the step with SIGTERM (SIGINT, SIGHUP sent by hand): the measurement it runs
    # is ended in turn (processes.run), and the step exits quietly, aborting the bisect
    processes.raise_on((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))  # a process of its own
    try:
        plan = Plan(**json.loads(Path(argv[-1]).read_text(encoding="utf-8")))
        sha = _git(plan.worktree, "rev-parse", "HEAD").stdout.strip()
        code, text = judge(plan, sha)
        Path(plan.results, f"{sha}.json").write_text(json.dumps({"code": code, "text": text}),
                                                     encoding="utf-8")
    except (processes.Ended, KeyboardInterrupt):
        return ABORT
    except Exception as exc:  # noqa: BLE001 (any fault here must stop the bisect, not mark a commit)
        print(f"asrbench bisect: step failed: {type(exc).__name__}: {redact(exc)}", file=sys.stderr)
        return ABORT
    word = {GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "abort")
    print(f"asrbench bisect: {sha[:12]} {word}: {text}", file=sys.stderr)
    return code


def _step_command(plan_path: Path) -> list[str]:
    """The step as a command line: this interpreter, with this asrbench's package directory
    first on sys.path (the worktree, the cwd of the step, may hold another asrbench)."""
    root = str(Path(asrbench.__file__).resolve().parent.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from asrbench.ab.bisect import step_main; sys.exit(step_main(sys.argv[2:]))")
    return [sys.executable, "-c", code, root, str(plan_path)]


# -- the bisect -----------------------------------------------------------------------------

def _checkout(worktree: Path, sha: str) -> None:
    _git(worktree, "checkout", "--quiet", "--detach", sha)


def _recorded(results: Path, sha: str) -> dict[str, Any] | None:
    path = results / f"{sha}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def skipped_commits(root: str | Path, results: Path) -> list[tuple[str, str, str]]:
    """The commits whose last judgement was a skip: (sha, subject, why), in the order judged."""
    out = []
    for path in sorted(results.glob("*.json"), key=lambda p: p.stat().st_mtime_ns):
        sha = path.stem
        if len(sha) != 40 or sha.endswith("-report"):
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("code") == SKIP:
            why = str(record.get("text", ""))
            out.append((sha, subject(root, sha), why.removeprefix("skipped: ")))
    return out


def _first_bad(output: str, worktree: Path, results: Path | None = None) -> str:
    if "is the first bad commit" not in output:
        lines = [line for line in output.splitlines() if line.strip()]
        candidates = [line.split()[0] for line in lines
                      if re.fullmatch(r"[0-9a-f]{40}\b.*", line.strip())]
        if candidates:
            named = []
            for sha in candidates:
                record = _recorded(results, sha) if results is not None else None
                why = f" (skipped: {record['text'].removeprefix('skipped: ')})" \
                    if record and record.get("code") == SKIP else ""
                named.append(f"{sha[:12]} {subject(worktree, sha)}{why}")
            raise AsrbenchError("git bisect did not single out one commit: skipped commits "
                                "leave these candidates for the first bad one: "
                                + "; ".join(named))
        skipped = [line for line in lines if "skip" in line.lower()]
        raise AsrbenchError("git bisect did not single out one commit: "
                            + (skipped[-1] if skipped else lines[-1] if lines else "no output"))
    return _git(worktree, "rev-parse", "refs/bisect/bad").stdout.strip()


def bisect(repo: Path, good_name: str, bad_name: str, metric: str = "counters",
           run_args: list[str] | None = None, command: str | None = None,
           say: Callable[[str], None] = lambda message: None) -> Found:
    """Find the first commit between GOOD and BAD whose measurement differs from GOOD's."""
    if metric not in METRICS:
        raise AsrbenchError(f"--metric {metric}: choose one of {', '.join(METRICS)}")
    if command is not None:
        if metric != "counters":
            raise AsrbenchError("--command works with --metric counters only (the throughput "
                                "A/B runs `asrbench run` of each commit)")
        if "{report}" not in command:
            raise AsrbenchError("--command must contain {report}: where the command writes "
                                "its report")
    root = repository_root(repo)
    good = resolve_commit(root, good_name, "GOOD")
    bad = resolve_commit(root, bad_name, "BAD")
    check_range(root, good, bad, good_name, bad_name)

    tmp = Path(tempfile.mkdtemp(prefix="asrbench-bisect-"))
    worktrees: list[Path] = []
    started = False
    try:
        results = tmp / "results"
        results.mkdir()
        worktree = tmp / "worktree"
        _git(root, "worktree", "add", "--quiet", "--detach", str(worktree), good)
        worktrees.append(worktree)
        plan = Plan(metric, str(worktree), str(results), good, list(run_args or []), command)
        plan_path = tmp / "plan.json"

        def run_bisect(step_plan: Plan, low: str, high: str) -> tuple[str, str]:
            """`git bisect run` between `low` (good) and `high` (bad, already judged and
            recorded): the first bad commit and what its step recorded."""
            nonlocal started
            if started:  # an earlier phase: its bisect state goes first
                _git(worktree, "bisect", "reset")
            plan_path.write_text(json.dumps(asdict(step_plan)), encoding="utf-8")
            if _git(worktree, "rev-parse", f"{high}^").stdout.strip() == low:
                return high, (_recorded(results, high) or {}).get("text", "(not recorded)")
            _git(worktree, "bisect", "start", high, low)
            started = True
            say("git bisect run ...")
            try:
                # a process group of its own (git, the step, what the step runs): an
                # interruption ends the whole tree (SIGTERM, then SIGKILL), not git alone
                done = processes.run(["git", "bisect", "run", *_step_command(plan_path)],
                                     cwd=worktree, stdout=subprocess.PIPE,
                                     stderr=None, text=True, errors="replace")
            except FileNotFoundError:
                raise AsrbenchError("git not found") from None
            first = _first_bad(done.stdout, worktree, results)
            if done.returncode != 0:
                raise AsrbenchError(f"git bisect run exited {done.returncode}")
            return first, (_recorded(results, first) or {}).get("text", "(not recorded)")

        def judged_bad(step_plan: Plan, sha: str, name: str) -> bool:
            """Judge one end of a range before bisecting it (True: it differs), recorded."""
            _checkout(worktree, sha)
            code, text = judge(step_plan, sha)
            if code == SKIP:
                raise AsrbenchError(f"{name} could not be judged: {text}")
            if code not in (GOOD, BAD):
                raise AsrbenchError(f"{name}: {text}")
            (results / f"{sha}.json").write_text(json.dumps({"code": code, "text": text}),
                                                 encoding="utf-8")
            return code == BAD

        if metric == "throughput":
            held = tmp / "good"
            _git(root, "worktree", "add", "--quiet", "--detach", str(held), good)
            worktrees.append(held)
            plan.good_worktree = str(held)
        else:
            say(f"measuring GOOD {good[:12]} {subject(root, good)}")
            try:
                report = _report(plan, good)
                plan.version = counter_version(report)
            except AsrbenchError as exc:
                raise AsrbenchError(f"GOOD {good_name} could not be measured: {exc}") from None
            if plan.version is None:
                raise AsrbenchError(f"GOOD {good_name}'s report has no counters (was it run "
                                    "with --no-counters?): nothing to compare")
            say(f"measuring BAD {bad[:12]} {subject(root, bad)}")
            _checkout(worktree, bad)
            try:
                bad_version = counter_version(_report(plan, bad))
            except AsrbenchError as exc:
                raise AsrbenchError(f"BAD {bad_name} could not be measured: {exc}") from None
            if bad_version is None:
                raise AsrbenchError(f"BAD {bad_name}'s report has no counters (not counted: "
                                    "--no-counters, or counting failed): nothing to compare")
            if bad_version != plan.version:
                return _across_definitions(root, plan, good, bad, good_name, bad_name,
                                           bad_version, run_bisect, judged_bad, say)
        if metric == "throughput":
            say(f"measuring BAD {bad[:12]} {subject(root, bad)}")
        if not judged_bad(plan, bad, f"BAD {bad_name}"):
            text = (_recorded(results, bad) or {}).get("text", "")
            raise AsrbenchError(f"GOOD {good_name} and BAD {bad_name} measure the same "
                                f"({text}): nothing to bisect")
        first, changes = run_bisect(plan, good, bad)
        return Found(first, subject(root, first), changes, skipped_commits(root, results))
    finally:
        # the worktrees go whatever happened; a second signal waits until they are gone
        with processes.signals_held():
            if started:
                _git(worktrees[0], "bisect", "reset", "--quiet", check=False)
            for path in reversed(worktrees):
                _git(root, "worktree", "remove", "--force", str(path), check=False)
            _git(root, "worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)


def _across_definitions(root: Path, plan: Plan, good: str, bad: str, good_name: str,
                        bad_name: str, bad_version: int,
                        run_bisect: Callable[[Plan, str, str], tuple[str, str]],
                        judged_bad: Callable[[Plan, str, str], bool],
                        say: Callable[[str], None]) -> Found:
    """BAD counts under other counter definitions than GOOD: find the commit where they
    changed, then bisect the counts under one definition on the side where they moved."""
    old = plan.version
    assert old is not None
    results = Path(plan.results)
    say(f"BAD counts under COUNTER_VERSION {bad_version}, GOOD under {old}: finding the commit "
        "where the counter definitions changed")
    (results / f"{bad}.json").write_text(json.dumps(
        {"code": BAD, "text": f"counts under COUNTER_VERSION {bad_version}, as BAD"}),
        encoding="utf-8")
    changed, _ = run_bisect(replace(plan, find_version=[old, bad_version]), good, bad)
    definitions = (f"the counter definitions changed at {changed[:12]} {subject(root, changed)} "
                   f"(COUNTER_VERSION {old} -> {bad_version}): counts under the two are not "
                   "compared")
    say(definitions)
    parent = _git(root, "rev-parse", f"{changed}^").stdout.strip()
    if parent != good and judged_bad(plan, parent, f"{parent[:12]} (the parent of the "
                                                   "definition change)"):
        first, changes = run_bisect(plan, good, parent)
        return Found(first, subject(root, first), changes, skipped_commits(root, results),
                     f"{definitions}; bisected GOOD .. {parent[:12]} under version {old}")
    after = replace(plan, good_sha=changed, version=bad_version)
    if changed != bad and judged_bad(after, bad, f"BAD {bad_name}"):
        first, changes = run_bisect(after, changed, bad)
        return Found(first, subject(root, first), changes, skipped_commits(root, results),
                     f"{definitions}; bisected {changed[:12]} .. BAD under version "
                     f"{bad_version} (the counts did not move before it)")
    raise AsrbenchError(f"GOOD {good_name} and BAD {bad_name} differ only across {definitions}: "
                        f"the counts moved neither before it (under version {old}) nor after "
                        f"it (under version {bad_version}); nothing to bisect: record the "
                        f"baseline again under version {bad_version}")

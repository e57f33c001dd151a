"""`asrbench bisect GOOD BAD`: the first commit where the work counters (exact, fast) or the
throughput (an A/B, slow) changed, found by `git bisect run` in a temporary worktree of the
user's repository (what asv's `find` and Chromium's Pinpoint do).

The user's checkout and its own bisect state are never touched: everything happens in a
`git worktree add --detach` under a temporary directory (bisect refs and logs are per worktree),
removed at the end, also on errors and interruptions. GOOD is measured once; BAD is measured
before the bisect starts (a BAD that measures like GOOD has nothing to find); then each step of
`git bisect run` measures the commit checked out and exits 0 (good: measures like GOOD), 1
(bad: changed) or 125 (skip: the measurement failed).

A measurement is `asrbench run` in a fresh process whose working directory and PYTHONPATH are
the worktree, so the commit's own asrbench runs; or --command, any shell command that writes a
report to {report}. The step process itself runs the bisecting asrbench (its package directory
is put first on sys.path), never the commit's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from asrbench.errors import AsrbenchError

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


@dataclass
class Found:
    """The first bad commit and what changed there."""

    sha: str
    subject: str
    changes: str


# -- git ------------------------------------------------------------------------------------

def _git(cwd: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise AsrbenchError("git not found: asrbench bisect needs git on PATH") from None
    if check and done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise AsrbenchError(f"git {' '.join(args[:2])} failed: {tail[-1] if tail else done.returncode}")
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

def _measure_report(plan: Plan, worktree: str, report: Path) -> None:
    """Write the report of the commit checked out in `worktree` to `report` (a fresh process
    whose cwd and PYTHONPATH are the worktree); a failure is an AsrbenchError."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (worktree, env.get("PYTHONPATH")) if p)
    if plan.command is not None:
        argv: Any = plan.command.replace("{report}", shlex.quote(str(report)))
        shell = True
    else:
        argv = [sys.executable, "-m", "asrbench", "run", "--passes", "1", *plan.run_args,
                "--report", str(report), "--no-progress"]
        shell = False
    try:
        done = subprocess.run(argv, cwd=worktree, env=env, shell=shell, capture_output=True,
                              text=True, errors="replace", timeout=MEASURE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AsrbenchError(f"no report after {MEASURE_TIMEOUT:g} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise AsrbenchError(f"the measurement exited {done.returncode}: "
                            f"{lines[-1].strip() if lines else '(no output)'}")
    if not report.is_file():
        raise AsrbenchError(f"the measurement wrote no report to {report}")


def counters_changes(good: Any, current: Any) -> str:
    """What changed between two reports' counters, run by run ("" when nothing did)."""
    from asrbench.gate.counters import UNSTABLE, counter_verdicts, describe_changes

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


def _judge_counters(plan: Plan, sha: str) -> tuple[int, str]:
    from asrbench.formats.io import load_report

    path = Path(plan.results) / f"{sha}-report.json"
    try:
        _measure_report(plan, plan.worktree, path)
        current = load_report(path)
    except AsrbenchError as exc:
        return SKIP, f"skipped: {exc}"
    good = load_report(Path(plan.results) / f"{plan.good_sha}-report.json")
    changes = counters_changes(good, current)
    return (BAD, changes) if changes else (GOOD, "same counters as GOOD")


def _judge_throughput(plan: Plan, sha: str) -> tuple[int, str]:
    from asrbench.ab import rounds

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
    try:
        plan = Plan(**json.loads(Path(argv[-1]).read_text(encoding="utf-8")))
        sha = _git(plan.worktree, "rev-parse", "HEAD").stdout.strip()
        code, text = judge(plan, sha)
        Path(plan.results, f"{sha}.json").write_text(json.dumps({"code": code, "text": text}),
                                                     encoding="utf-8")
    except Exception as exc:  # noqa: BLE001 (any fault here must stop the bisect, not mark a commit)
        print(f"asrbench bisect: step failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ABORT
    word = {GOOD: "good", BAD: "bad", SKIP: "skip"}.get(code, "abort")
    print(f"asrbench bisect: {sha[:12]} {word}: {text}", file=sys.stderr)
    return code


def _step_command(plan_path: Path) -> list[str]:
    """The step as a command line: this interpreter, with this asrbench's package directory
    first on sys.path (the worktree, the cwd of the step, may hold another asrbench)."""
    import asrbench

    root = str(Path(asrbench.__file__).resolve().parent.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from asrbench.ab.bisect import step_main; sys.exit(step_main(sys.argv[2:]))")
    return [sys.executable, "-c", code, root, str(plan_path)]


# -- the bisect -----------------------------------------------------------------------------

def _checkout(worktree: Path, sha: str) -> None:
    _git(worktree, "checkout", "--quiet", "--detach", sha)


def _first_bad(output: str, worktree: Path) -> str:
    if "is the first bad commit" not in output:
        lines = [line for line in output.splitlines() if line.strip()]
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
        if metric == "throughput":
            held = tmp / "good"
            _git(root, "worktree", "add", "--quiet", "--detach", str(held), good)
            worktrees.append(held)
            plan.good_worktree = str(held)
        else:
            say(f"measuring GOOD {good[:12]} {subject(root, good)}")
            try:
                _measure_report(plan, str(worktree), results / f"{good}-report.json")
                from asrbench.formats.io import load_report

                report = load_report(results / f"{good}-report.json")
            except AsrbenchError as exc:
                raise AsrbenchError(f"GOOD {good_name} could not be measured: {exc}") from None
            if not any(run.counters is not None for run in report.runs):
                raise AsrbenchError(f"GOOD {good_name}'s report has no counters (was it run "
                                    "with --no-counters?): nothing to compare")
        say(f"measuring BAD {bad[:12]} {subject(root, bad)}")
        _checkout(worktree, bad)
        code, text = judge(plan, bad)
        if code == SKIP:
            raise AsrbenchError(f"BAD {bad_name} could not be measured: {text}")
        if code == GOOD:
            raise AsrbenchError(f"GOOD {good_name} and BAD {bad_name} measure the same "
                                f"({text}): nothing to bisect")
        if code != BAD:
            raise AsrbenchError(f"BAD {bad_name}: {text}")
        (results / f"{bad}.json").write_text(json.dumps({"code": code, "text": text}),
                                             encoding="utf-8")
        plan_path = tmp / "plan.json"
        plan_path.write_text(json.dumps(asdict(plan)), encoding="utf-8")
        _git(worktree, "bisect", "start", bad, good)
        started = True
        say("git bisect run ...")
        try:
            done = subprocess.run(["git", "bisect", "run", *_step_command(plan_path)],
                                  cwd=worktree, stdout=subprocess.PIPE,
                                  stderr=None, text=True, errors="replace")
        except FileNotFoundError:
            raise AsrbenchError("git not found") from None
        first = _first_bad(done.stdout, worktree)
        if done.returncode != 0:
            raise AsrbenchError(f"git bisect run exited {done.returncode}")
        recorded = results / f"{first}.json"
        changes = (json.loads(recorded.read_text(encoding="utf-8"))["text"]
                   if recorded.is_file() else "(not recorded)")
        return Found(first, subject(root, first), changes)
    finally:
        if started:
            _git(worktrees[0], "bisect", "reset", "--quiet", check=False)
        for path in reversed(worktrees):
            _git(root, "worktree", "remove", "--force", str(path), check=False)
        _git(root, "worktree", "prune", check=False)
        shutil.rmtree(tmp, ignore_errors=True)

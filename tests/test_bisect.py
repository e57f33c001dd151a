"""`asrbench bisect` over a scratch git repository: eight commits of a fake project whose
`measure.py` copies the commit's report (aten.mm 10 per decode step up to commit 5, 12 from
commit 6 on); --command measures with it, so no model runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_report, make_run

from asrbench.cli.main import main
from asrbench.formats.model import COUNTER_VERSION, Counters, dump

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
ROOT = Path(__file__).resolve().parent.parent
MEASURE = "import shutil, sys\nshutil.copy('report.json', sys.argv[1])\n"
COMMAND = f"{sys.executable} measure.py {{report}}"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def report_text(mm: int | None, version: int = COUNTER_VERSION) -> str:
    """A report whose decode step does `mm` aten.mm (None: a run that was not counted)."""
    if mm is None:
        return json.dumps(dump(make_report(make_run(counters=None))))
    counters = Counters(version=version, selection="s", rows=1, real_rows=1,
                        replay_bypassed=False, encoder_calls=1, decode_steps=3, steady_steps=2,
                        decode_step_ops={"aten.mm f32": mm}, flops=100, flops_per_utterance=100,
                        host_syncs=0, host_syncs_per_token=0, tokens=3)
    return json.dumps(dump(make_report(make_run(counters=counters))))


def make_repo(root: Path, mm_per_commit: list, versions: list[int] | None = None) -> list[str]:
    """A repository with one commit per entry (its aten.mm count, None: not counted, and its
    COUNTER_VERSION); returns the shas, oldest first."""
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    shas = []
    for number, mm in enumerate(mm_per_commit, start=1):
        version = versions[number - 1] if versions else COUNTER_VERSION
        (root / "measure.py").write_text(MEASURE)
        (root / "report.json").write_text(report_text(mm, version))
        (root / "log.txt").write_text(f"commit {number}\n")
        git(root, "add", ".")
        git(root, "commit", "--quiet", "-m", f"commit {number}")
        shas.append(git(root, "rev-parse", "HEAD"))
    return shas


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "project"
    return path, make_repo(path, [10] * 5 + [12] * 3)


def test_finds_the_commit_that_changed_a_counter(repo, capsys):
    path, shas = repo
    # the user's checkout is on a branch with an uncommitted change: bisect must leave both
    (path / "log.txt").write_text("work in progress\n")
    code = main(["bisect", shas[0], shas[7], "--repo", str(path), "--command", COMMAND])
    out = capsys.readouterr().out
    assert code == 0
    assert f"first bad commit: {shas[5]} commit 6" in out
    assert "aten.mm f32 10 -> 12 (+2)" in out
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (path / "log.txt").read_text() == "work in progress\n"
    assert git(path, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert not (Path(git(path, "rev-parse", "--git-dir")) / "BISECT_LOG").exists()
    assert git(path, "for-each-ref", "refs/bisect") == ""


def test_a_failing_commit_is_skipped(tmp_path, capsys):
    path = tmp_path / "project"
    shas = make_repo(path, [10, 10, 10, 12, 12])
    # commit 2's measurement fails: skipped, and the change at commit 4 is still found
    git(path, "checkout", "--quiet", shas[1])
    (path / "measure.py").write_text("raise SystemExit(3)\n")
    git(path, "commit", "--quiet", "-am", "broken")
    broken = git(path, "rev-parse", "HEAD")
    for number in (3, 4, 5):
        (path / "measure.py").write_text(MEASURE)
        (path / "report.json").write_text(report_text(10 if number == 3 else 12))
        (path / "log.txt").write_text(f"again {number}\n")
        git(path, "add", ".")
        git(path, "commit", "--quiet", "-m", f"again {number}")
    last = git(path, "rev-parse", "HEAD")
    change = git(path, "rev-parse", "HEAD~1")
    assert main(["bisect", shas[0], last, "--repo", str(path), "--command", COMMAND]) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {change} again 4" in out
    assert broken not in out


def test_error_lines(repo, tmp_path, capsys):
    path, shas = repo

    def error(*argv: str) -> str:
        assert main(["bisect", "--command", COMMAND, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("asrbench: error: ")
        return err[-1]

    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not a git repository" in error("a", "b", "--repo", str(plain))
    # without --command too (the default measurement: `asrbench run` of each commit)
    assert main(["bisect", "a", "b", "--repo", str(plain)]) == 2
    assert "not a git repository" in capsys.readouterr().err
    assert "GOOD nosuch: unknown commit" in error("nosuch", shas[7], "--repo", str(path))
    assert "BAD nosuch: unknown commit" in error(shas[0], "nosuch", "--repo", str(path))
    assert "is not an ancestor of BAD" in error(shas[7], shas[0], "--repo", str(path))
    assert "the same commit" in error(shas[2], shas[2], "--repo", str(path))
    assert "measure the same" in error(shas[0], shas[4], "--repo", str(path))
    assert "--command must contain {report}" in error(shas[0], shas[7], "--repo", str(path),
                                                      "--command", "true")
    # nothing was left behind by the refusals
    assert git(path, "worktree", "list").count("\n") == 0
    assert git(path, "for-each-ref", "refs/bisect") == ""


def test_an_interruption_cleans_up(repo, monkeypatch, capsys):
    from asrbench.ab import bisect as logic
    from asrbench.cli.common import Interrupted

    path, shas = repo

    def interrupted(plan, sha):
        raise Interrupted("SIGINT", 130)

    monkeypatch.setattr(logic, "judge", interrupted)
    assert main(["bisect", shas[0], shas[7], "--repo", str(path), "--command", COMMAND]) == 130
    assert "interrupted (SIGINT)" in capsys.readouterr().err
    assert git(path, "worktree", "list").count("\n") == 0
    assert git(path, "for-each-ref", "refs/bisect") == ""


def test_an_uncounted_commit_is_skipped_and_listed_never_judged_bad(tmp_path, capsys):
    # commits 3 and 4 were measured without counters: on 64ba4a1 commit 3 was named
    # ("changed: counted -> not counted"); the counter change is at commit 6
    path = tmp_path / "project"
    shas = make_repo(path, [10, 10, None, None, 10, 12, 12])
    assert main(["bisect", shas[0], shas[6], "--repo", str(path), "--command", COMMAND]) == 0
    out = capsys.readouterr().out
    assert f"first bad commit: {shas[5]} commit 6" in out
    assert "aten.mm f32 10 -> 12 (+2)" in out
    skipped = [line for line in out.splitlines() if line.startswith("skipped (not judged): ")]
    assert skipped, out
    assert all("not counted by this commit" in line for line in skipped)
    assert {line.split()[3] for line in skipped} <= {shas[2][:12], shas[3][:12]}
    assert "counted -> not counted" not in out


def test_an_uncounted_bad_is_refused(tmp_path, capsys):
    path = tmp_path / "project"
    shas = make_repo(path, [10, 10, None])
    assert main(["bisect", shas[0], shas[2], "--repo", str(path), "--command", COMMAND]) == 2
    err = capsys.readouterr().err
    assert "BAD" in err and "no counters" in err


@pytest.mark.parametrize("change_at, expected", [(4, 6), (6, 5)])
def test_a_counter_definition_change_is_reported_and_the_rest_bisected(tmp_path, capsys,
                                                                        change_at, expected):
    # the definitions change (version 1 -> 2) at commit `change_at`: under version 2 the same
    # code counts 100 more aten.mm; the real change (+2) is at commit `expected`, after the
    # definition change or before it. On 64ba4a1 the definition change was named.
    path = tmp_path / "project"
    real = expected
    mm = [(10 if n < real else 12) + (100 if n >= change_at else 0) for n in range(1, 9)]
    versions = [1 if n < change_at else 2 for n in range(1, 9)]
    shas = make_repo(path, mm, versions)
    assert main(["bisect", shas[0], shas[7], "--repo", str(path), "--command", COMMAND]) == 0
    out = capsys.readouterr().out
    assert (f"definitions: the counter definitions changed at {shas[change_at - 1][:12]} "
            f"commit {change_at} (COUNTER_VERSION 1 -> 2)") in out
    assert f"first bad commit: {shas[expected - 1]} commit {expected}" in out
    before, after = (10, 12) if expected < change_at else (110, 112)
    assert f"aten.mm f32 {before} -> {after} (+2)" in out


def test_a_definition_change_alone_stops_the_bisect_and_says_why(tmp_path, capsys):
    path = tmp_path / "project"
    shas = make_repo(path, [10, 10, 10, 110, 110], [1, 1, 1, 2, 2])
    assert main(["bisect", shas[0], shas[4], "--repo", str(path), "--command", COMMAND]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"the counter definitions changed at {shas[3][:12]} commit 4" in err
    assert "nothing to bisect" in err


def test_a_step_counts_counters_only_where_the_commits_asrbench_has_it(tmp_path):
    """Issue 29: a step runs `asrbench run --counters-only` (no timed pass) when the commit's
    own asrbench declares the option, else one timed pass (a commit from before it)."""
    from asrbench.ab.bisect import _counting_mode

    assert _counting_mode(str(ROOT)) == ["--counters-only"]
    old = tmp_path / "asrbench" / "config"
    old.mkdir(parents=True)
    (old / "options.py").write_text('Option("counters", "...")\n')
    assert _counting_mode(str(tmp_path)) == ["--passes", "1"]
    assert _counting_mode(str(tmp_path / "nothing")) == ["--passes", "1"]


def test_skipped_commits_that_leave_candidates_are_named_with_why(tmp_path, capsys):
    # commit 2 was not counted and commit 3 changed: the first bad commit is 2 or 3
    path = tmp_path / "project"
    shas = make_repo(path, [10, None, 12])
    assert main(["bisect", shas[0], shas[2], "--repo", str(path), "--command", COMMAND]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "did not single out one commit" in err
    assert f"{shas[1][:12]} commit 2 (skipped: cfg: not counted by this commit" in err
    assert f"{shas[2][:12]} commit 3" in err
